# Reference fits for the SEM extensions (robust ML, FIML, WLSMV, tetrachoric correlations,
# measurement invariance with lavaan and semTools, RI-CLPM extensions), written to
# sem2_lavaan.json.
#
# Regenerate (from any directory; paths are found from this file's location):
#   cd tests/reference && ../../.venv/bin/python generate_sem2.py && Rscript sem2_lavaan.R
#
# Cases ("cases" in the JSON; every case is one lavaan fit):
#   hs_mlr                  HS three-factor CFA, estimator = "MLR", complete data.
#   hs_mlr_fiml             the same on sem2_hs_missing.csv, MLR, missing = "fiml".
#   hs_ml_fiml              the same, ML, missing = "fiml" (mean structure on).
#   ordinal_wlsmv           two-factor CFA of the six ordinal items of sem2_ordinal.csv,
#                           ordered = all items, estimator = "WLSMV".
#   ordinal_wlsmv_mg_configural / ordinal_wlsmv_mg_scalar
#                           the same by `group`, free vs thresholds + loadings equal.
#   hs_inv_{configural,metric,scalar,strict}        HS by school, ML, group.equal =
#                           "" / loadings / + intercepts / + residuals.
#   hs_inv_{...}_mlr        the same four with estimator = "MLR".
#   hs_inv_scalar_measeq    the scalar model written by semTools::measEq.syntax().
#   long_{configural,metric,scalar}  longitudinal invariance of one factor over three
#                           occasions (sem2_longitudinal.csv), syntax from
#                           semTools::measEq.syntax(longFacNames = ...), ML.
#   riclpm_cov              5-wave RI-CLPM (Mulder & Hamaker 2021) with the time-invariant
#                           covariate z predicting both random intercepts, FIML.
#   riclpm_cov_observed     the equivalent parameterization with every x_t (y_t) regressed
#                           on z with one label per variable (stored to check equivalence).
#   riclpm_2groups_free / riclpm_2groups_lagged_equal
#                           multigroup RI-CLPM over `group`, FIML, lagged effects free vs
#                           equal across groups (labels).
# Other top-level entries: "lrt" (lavTestLRT between nested fits), "polychoric"
# (lavCor on the ordinal items), "tetrachoric_empty_cell", "measeq" (the generated syntax
# and arguments), "checks" (internal consistency checks), "published_check".
#
# Each case stores the call, the syntax, the estimation options, nobs, npar, convergence,
# every row of parameterEstimates(fit, standardized = TRUE, remove.nonfree = FALSE), the
# requested fit measures (null where lavaan does not define them), all of fitMeasures(fit),
# and the test statistics of lavInspect(fit, "test") (what lavTest() returns).

local({
  args <- commandArgs(trailingOnly = FALSE)
  f <- sub("^--file=", "", args[grep("^--file=", args)])
  here <- if (length(f)) dirname(normalizePath(f[1])) else getwd()
  source(file.path(here, "reference_helpers.R"), local = globalenv())
})
suppressPackageStartupMessages({
  library(lavaan)
  library(semTools)
})
# plain quotes in lavaan's messages and headings, whatever the locale
options(useFancyQuotes = FALSE)

paths <- ref_paths()

REQUESTED_FIT <- c("npar", "ntotal", "chisq", "df", "pvalue", "chisq.scaled", "df.scaled",
                   "pvalue.scaled", "chisq.scaling.factor", "cfi", "tli", "rmsea",
                   "rmsea.ci.lower", "rmsea.ci.upper", "cfi.scaled", "tli.scaled",
                   "rmsea.scaled", "cfi.robust", "tli.robust", "rmsea.robust",
                   "rmsea.ci.lower.robust", "rmsea.ci.upper.robust", "srmr", "logl",
                   "aic", "bic")

# ---- data ---------------------------------------------------------------------------
HS <- read.csv(file.path(paths$data, "HolzingerSwineford1939.csv"))
HS_MISSING <- read.csv(file.path(paths$here, "sem2_hs_missing.csv"))
ORD <- read.csv(file.path(paths$here, "sem2_ordinal.csv"))
LONG <- read.csv(file.path(paths$here, "sem2_longitudinal.csv"))
RI <- read.csv(file.path(paths$here, "sem2_riclpm.csv"))
ORD_ITEMS <- paste0("u", 1:6)

# ---- syntax -------------------------------------------------------------------------
HS_MODEL <- "
visual  =~ x1 + x2 + x3
textual =~ x4 + x5 + x6
speed   =~ x7 + x8 + x9
"

ORD_MODEL <- "
F1 =~ u1 + u2 + u3
F2 =~ u4 + u5 + u6
"

LONG_CONFIGURAL <- "
F1 =~ i1_t1 + i2_t1 + i3_t1 + i4_t1
F2 =~ i1_t2 + i2_t2 + i3_t2 + i4_t2
F3 =~ i1_t3 + i2_t3 + i3_t3 + i4_t3
"

# RI-CLPM of Mulder & Hamaker (2021, https://jeroendmulder.github.io/RI-CLPM/lavaan.html),
# 5 waves. `lagged` is the block of lagged regressions (free or labelled).
riclpm_syntax <- function(between_extra = "", lagged) {
  paste0("
# between part: random intercepts
RIx =~ 1*x1 + 1*x2 + 1*x3 + 1*x4 + 1*x5
RIy =~ 1*y1 + 1*y2 + 1*y3 + 1*y4 + 1*y5
RIx ~~ RIx
RIy ~~ RIy
RIx ~~ RIy
", between_extra, "
# within part: within-person components
wx1 =~ 1*x1
wx2 =~ 1*x2
wx3 =~ 1*x3
wx4 =~ 1*x4
wx5 =~ 1*x5
wy1 =~ 1*y1
wy2 =~ 1*y2
wy3 =~ 1*y3
wy4 =~ 1*y4
wy5 =~ 1*y5
# lagged effects between the within-person components
", lagged, "
# covariance of the within components at wave 1 and of the innovations
wx1 ~~ wy1
wx2 ~~ wy2
wx3 ~~ wy3
wx4 ~~ wy4
wx5 ~~ wy5
# (residual) variances of the within components
wx1 ~~ wx1
wy1 ~~ wy1
wx2 ~~ wx2
wy2 ~~ wy2
wx3 ~~ wx3
wy3 ~~ wy3
wx4 ~~ wx4
wy4 ~~ wy4
wx5 ~~ wx5
wy5 ~~ wy5
")
}

LAGGED_FREE <- "wx2 + wy2 ~ wx1 + wy1
wx3 + wy3 ~ wx2 + wy2
wx4 + wy4 ~ wx3 + wy3
wx5 + wy5 ~ wx4 + wy4"

# the same regressions, each with one label shared by both groups (equal across groups,
# free over waves)
LAGGED_EQUAL_GROUPS <- paste(vapply(2:5, function(t) sprintf(
  "wx%1$d ~ c(axx%1$d, axx%1$d)*wx%2$d + c(axy%1$d, axy%1$d)*wy%2$d\nwy%1$d ~ c(ayx%1$d, ayx%1$d)*wx%2$d + c(ayy%1$d, ayy%1$d)*wy%2$d",
  t, t - 1L), ""), collapse = "\n")

RICLPM_COV_MODEL <- riclpm_syntax(
  between_extra = "# time-invariant covariate predicting the random intercepts
RIx + RIy ~ z
", lagged = LAGGED_FREE)

RICLPM_COV_OBSERVED_MODEL <- riclpm_syntax(
  between_extra = "# equivalent: every wave regressed on z, one label per variable
x1 + x2 + x3 + x4 + x5 ~ sx*z
y1 + y2 + y3 + y4 + y5 ~ sy*z
", lagged = LAGGED_FREE)

RICLPM_MODEL <- riclpm_syntax(lagged = LAGGED_FREE)
RICLPM_EQUAL_MODEL <- riclpm_syntax(lagged = LAGGED_EQUAL_GROUPS)

# ---- semTools::measEq.syntax --------------------------------------------------------
MEASEQ_HS_ARGS <- list(configural.model = HS_MODEL, data = HS, group = "school",
                       group.equal = c("loadings", "intercepts"), ID.fac = "marker")
MEASEQ_HS_CALL <- paste0("measEq.syntax(configural.model = HS_MODEL, data = HolzingerSwineford1939, ",
                         "group = \"school\", group.equal = c(\"loadings\", \"intercepts\"), ",
                         "ID.fac = \"marker\")")
measeq_hs <- do.call(measEq.syntax, MEASEQ_HS_ARGS)
MEASEQ_HS_SYNTAX <- as.character(measeq_hs)

LONG_FAC <- list(F = c("F1", "F2", "F3"))
LONG_IND <- list(i1 = c("i1_t1", "i1_t2", "i1_t3"), i2 = c("i2_t1", "i2_t2", "i2_t3"),
                 i3 = c("i3_t1", "i3_t2", "i3_t3"), i4 = c("i4_t1", "i4_t2", "i4_t3"))
LONG_LEVELS <- list(configural = "", metric = "loadings", scalar = c("loadings", "intercepts"))
long_measeq <- lapply(LONG_LEVELS, function(eq) {
  measEq.syntax(configural.model = LONG_CONFIGURAL, data = LONG, ID.fac = "marker",
                longFacNames = LONG_FAC, long.equal = eq, auto = "all", return.fit = FALSE)
})
LONG_SYNTAX <- lapply(long_measeq, as.character)
# the same with the indicators named explicitly (longIndNames) must give the same syntax
LONG_SYNTAX_EXPLICIT <- lapply(LONG_LEVELS, function(eq) {
  as.character(measEq.syntax(configural.model = LONG_CONFIGURAL, data = LONG, ID.fac = "marker",
                             longFacNames = LONG_FAC, longIndNames = LONG_IND,
                             long.equal = eq, auto = "all", return.fit = FALSE))
})

# ---- cases --------------------------------------------------------------------------
HS_FILE <- "data/reference/HolzingerSwineford1939.csv"
case <- function(data_file, call, syntax, fit) {
  list(data_file = data_file, call = call, syntax = syntax, fit = fit)
}

CASES <- list(
  hs_mlr = case(HS_FILE, "cfa(model, data = HolzingerSwineford1939, estimator = \"MLR\")",
                HS_MODEL, function() cfa(HS_MODEL, data = HS, estimator = "MLR")),
  hs_mlr_fiml = case("tests/reference/sem2_hs_missing.csv",
                     "cfa(model, data, estimator = \"MLR\", missing = \"fiml\")",
                     HS_MODEL, function() cfa(HS_MODEL, data = HS_MISSING, estimator = "MLR",
                                              missing = "fiml")),
  hs_ml_fiml = case("tests/reference/sem2_hs_missing.csv",
                    "cfa(model, data, estimator = \"ML\", missing = \"fiml\")",
                    HS_MODEL, function() cfa(HS_MODEL, data = HS_MISSING, estimator = "ML",
                                             missing = "fiml")),
  ordinal_wlsmv = case("tests/reference/sem2_ordinal.csv",
                       "cfa(model, data, ordered = c(\"u1\", ..., \"u6\"), estimator = \"WLSMV\")",
                       ORD_MODEL, function() cfa(ORD_MODEL, data = ORD, ordered = ORD_ITEMS,
                                                 estimator = "WLSMV")),
  ordinal_wlsmv_mg_configural = case(
    "tests/reference/sem2_ordinal.csv",
    "cfa(model, data, ordered = c(\"u1\", ..., \"u6\"), estimator = \"WLSMV\", group = \"group\")",
    ORD_MODEL, function() cfa(ORD_MODEL, data = ORD, ordered = ORD_ITEMS, estimator = "WLSMV",
                              group = "group")),
  ordinal_wlsmv_mg_scalar = case(
    "tests/reference/sem2_ordinal.csv",
    "cfa(model, data, ordered = c(\"u1\", ..., \"u6\"), estimator = \"WLSMV\", group = \"group\", group.equal = c(\"thresholds\", \"loadings\"))",
    ORD_MODEL, function() cfa(ORD_MODEL, data = ORD, ordered = ORD_ITEMS, estimator = "WLSMV",
                              group = "group", group.equal = c("thresholds", "loadings")))
)

INV_LEVELS <- list(configural = character(0), metric = "loadings",
                   scalar = c("loadings", "intercepts"),
                   strict = c("loadings", "intercepts", "residuals"))
for (est in c("ML", "MLR")) {
  for (lev in names(INV_LEVELS)) {
    local({
      eq <- INV_LEVELS[[lev]]
      e <- est
      eq_txt <- if (length(eq)) paste0(", group.equal = c(", paste0("\"", eq, "\"", collapse = ", "), ")") else ""
      nm <- paste0("hs_inv_", lev, if (e == "MLR") "_mlr" else "")
      CASES[[nm]] <<- case(
        HS_FILE,
        paste0("cfa(model, data = HolzingerSwineford1939, group = \"school\"", eq_txt,
               if (e == "MLR") ", estimator = \"MLR\"" else "", ")"),
        HS_MODEL,
        function() {
          if (length(eq)) cfa(HS_MODEL, data = HS, group = "school", group.equal = eq, estimator = e)
          else cfa(HS_MODEL, data = HS, group = "school", estimator = e)
        })
    })
  }
}
CASES$hs_inv_scalar_measeq <- case(
  HS_FILE, paste0("lavaan(as.character(", MEASEQ_HS_CALL, "), data = HolzingerSwineford1939, group = \"school\")"),
  MEASEQ_HS_SYNTAX, function() lavaan(MEASEQ_HS_SYNTAX, data = HS, group = "school"))

for (lev in names(LONG_LEVELS)) {
  local({
    l <- lev
    CASES[[paste0("long_", l)]] <<- case(
      "tests/reference/sem2_longitudinal.csv",
      "lavaan(as.character(measEq.syntax(...)), data)  # arguments under measeq.longitudinal",
      LONG_SYNTAX[[l]], function() lavaan(LONG_SYNTAX[[l]], data = LONG))
  })
}

RI_CALL <- "lavaan(model, data, missing = \"fiml\", meanstructure = TRUE, int.ov.free = TRUE"
CASES$riclpm_cov <- case(
  "tests/reference/sem2_riclpm.csv", paste0(RI_CALL, ")"), RICLPM_COV_MODEL,
  function() lavaan(RICLPM_COV_MODEL, data = RI, missing = "fiml", meanstructure = TRUE,
                    int.ov.free = TRUE))
CASES$riclpm_cov_observed <- case(
  "tests/reference/sem2_riclpm.csv", paste0(RI_CALL, ")"), RICLPM_COV_OBSERVED_MODEL,
  function() lavaan(RICLPM_COV_OBSERVED_MODEL, data = RI, missing = "fiml", meanstructure = TRUE,
                    int.ov.free = TRUE))
CASES$riclpm_2groups_free <- case(
  "tests/reference/sem2_riclpm.csv", paste0(RI_CALL, ", group = \"group\")"), RICLPM_MODEL,
  function() lavaan(RICLPM_MODEL, data = RI, missing = "fiml", meanstructure = TRUE,
                    int.ov.free = TRUE, group = "group"))
CASES$riclpm_2groups_lagged_equal <- case(
  "tests/reference/sem2_riclpm.csv", paste0(RI_CALL, ", group = \"group\")"), RICLPM_EQUAL_MODEL,
  function() lavaan(RICLPM_EQUAL_MODEL, data = RI, missing = "fiml", meanstructure = TRUE,
                    int.ov.free = TRUE, group = "group"))

# ---- extraction ---------------------------------------------------------------------
parameter_rows <- function(fit) {
  pe <- parameterEstimates(fit, standardized = TRUE, remove.nonfree = FALSE)
  pt <- parTable(fit)
  if (is.null(pe$group)) pe$group <- 1L
  if (is.null(pe$label)) pe$label <- ""
  key_pe <- paste(pe$lhs, pe$op, pe$rhs, pe$group)
  key_pt <- paste(pt$lhs, pt$op, pt$rhs, pt$group)
  if (anyNA(match(key_pe, key_pt))) stop("parameterEstimates row not found in parTable")
  pe$free <- pt$free[match(key_pe, key_pt)] > 0
  keep <- intersect(c("lhs", "op", "rhs", "group", "label", "free", "est", "se", "z", "pvalue",
                      "std.all"), names(pe))
  out <- pe[, keep]
  rownames(out) <- NULL
  out
}

fit_measures <- function(fit) {
  all <- fitMeasures(fit)
  requested <- lapply(REQUESTED_FIT, function(m) if (m %in% names(all)) unname(all[[m]]) else NA)
  names(requested) <- REQUESTED_FIT
  # fitMeasures() omits ntotal under WLSMV; it is a count, not a fit measure, so fill it in
  if (is.na(requested$ntotal)) requested$ntotal <- lavInspect(fit, "ntotal")
  list(requested = requested, all = named_numbers(all))
}

test_statistics <- function(fit) {
  tests <- lavInspect(fit, "test")
  out <- lapply(tests, function(t) {
    keep <- intersect(c("test", "label", "stat", "stat.group", "df", "refdistr", "pvalue",
                        "scaling.factor", "scaling.factor.h1", "scaling.factor.h0",
                        "shift.parameter", "trace.UGamma", "trace.UGamma2"), names(t))
    lapply(t[keep], function(v) if (is.numeric(v)) as.vector(v) else v)
  })
  names(out) <- names(tests)
  out
}

summarise_case <- function(spec) {
  res <- capture_fit(spec$fit())
  fit <- res$value
  opts <- lavInspect(fit, "options")
  post <- capture_fit(lavInspect(fit, "post.check"))
  fm <- fit_measures(fit)
  ng <- lavInspect(fit, "ngroups")
  list(
    data_file = spec$data_file,
    call = spec$call,
    syntax = spec$syntax,
    options = list(
      estimator = opts$estimator, se = opts$se, test = I(opts$test),
      information = I(opts$information), observed.information = I(opts$observed.information),
      h1.information = I(opts$h1.information), likelihood = opts$likelihood,
      missing = opts$missing, meanstructure = opts$meanstructure,
      parameterization = opts$parameterization, fixed.x = opts$fixed.x,
      group.equal = I(opts$group.equal), zero.add = I(opts$zero.add),
      zero.keep.margins = opts$zero.keep.margins),
    ngroups = ng,
    group_label = I(lavInspect(fit, "group.label")),
    nobs = I(lavInspect(fit, "nobs")),
    ntotal = lavInspect(fit, "ntotal"),
    npar = lavInspect(fit, "npar"),
    converged = lavInspect(fit, "converged"),
    iterations = lavInspect(fit, "iterations"),
    optimizer = opts$optim.method,
    post_check_ok = isTRUE(post$value),
    warnings = I(c(res$warnings, post$warnings)),
    parameters = parameter_rows(fit),
    fit_measures = fm$requested,
    fit_measures_all = fm$all,
    test = test_statistics(fit)
  )
}

# lavTestLRT(fit0, fit1) as rows {model, Df, AIC, BIC, Chisq, Chisq diff, ...} plus the method
lrt <- function(fits, names_, note = NULL) {
  a <- do.call(lavTestLRT, c(unname(fits[names_]), list(model.names = names_)))
  heading <- attr(a, "heading")
  method <- if (grepl("method = ", heading)) sub('.*method = "([^"]+)".*', "\\1", heading) else "standard chi-square difference"
  df <- as.data.frame(a)
  rows <- lapply(seq_len(nrow(df)), function(i) {
    r <- c(list(model = rownames(df)[i]), lapply(as.list(df[i, , drop = FALSE]), function(v) unname(v)))
    r
  })
  out <- list(models = I(names_), method = method, heading = trimws(heading), rows = rows)
  if (!is.null(note)) out$note <- note
  out
}

# Satorra-Bentler (2001) scaled difference by hand, from the standard chi-squares T, the
# df d and the scaling factors c = chisq / chisq.scaled of the less restricted model (0)
# and the more restricted model (1): (T1 - T0) / ((d1 c1 - d0 c0) / (d1 - d0)).
sb2001 <- function(f0, f1) {
  m0 <- fitMeasures(f0); m1 <- fitMeasures(f1)
  d0 <- m0[["df"]]; d1 <- m1[["df"]]
  c0 <- m0[["chisq.scaling.factor"]]; c1 <- m1[["chisq.scaling.factor"]]
  cd <- (d1 * c1 - d0 * c0) / (d1 - d0)
  unname((m1[["chisq"]] - m0[["chisq"]]) / cd)
}

# ---- polychoric and tetrachoric correlations ---------------------------------------
polychoric_reference <- function() {
  X <- ORD[, ORD_ITEMS]
  cor_res <- capture_fit(lavCor(X, ordered = ORD_ITEMS, output = "cor"))
  th <- lavCor(X, ordered = ORD_ITEMS, output = "th")
  est <- lavCor(X, ordered = ORD_ITEMS, output = "est", se = "standard")
  names(est)[names(est) == "est.std"] <- "est"  # lavCor labels the column est.std
  est <- est[est$op %in% c("~~", "|") & !(est$op == "~~" & est$lhs == est$rhs), c("lhs", "op", "rhs", "est", "se")]
  rownames(est) <- NULL
  list(
    data_file = "tests/reference/sem2_ordinal.csv",
    items = I(ORD_ITEMS),
    n = nrow(X),
    call = "lavCor(x, ordered = items) with output = \"cor\" / \"th\"; SEs from output = \"est\", se = \"standard\"",
    rho = matrix_to_list(unclass(as.matrix(cor_res$value))),
    thresholds = named_numbers(th),
    estimates = est,
    warnings = I(cor_res$warnings)
  )
}

# Two binary items, n = 80, whose 2x2 table has one empty cell (a = 0, b = 1):
#            b = 0   b = 1
#   a = 0      30       0
#   a = 1      20      30
TETRA <- data.frame(a = c(rep(0L, 30), rep(1L, 50)),
                    b = c(rep(0L, 30), rep(0L, 20), rep(1L, 30)))

tetrachoric_reference <- function() {
  tab <- table(a = TETRA$a, b = TETRA$b)
  fit <- lavCor(TETRA, ordered = c("a", "b"), output = "fit")
  opts <- lavInspect(fit, "options")
  est <- lavCor(TETRA, ordered = c("a", "b"), output = "est", se = "standard")
  names(est)[names(est) == "est.std"] <- "est"
  rho_row <- est[est$lhs == "a" & est$op == "~~" & est$rhs == "b", ]
  th_rows <- est[est$op == "|", c("lhs", "op", "rhs", "est", "se")]
  rownames(th_rows) <- NULL

  # Independent check: lavaan's 2x2 rule with zero.keep.margins = TRUE moves 0.5 into the
  # empty cell and its diagonal partner's opposite pair, keeping the margins:
  # n11 - 0.5, n22 - 0.5, n12 + 0.5, n21 + 0.5 when the empty cell is off the diagonal.
  # Thresholds are the probits of the (unchanged) margins; rho maximises the bivariate
  # normal log-likelihood of the adjusted table.
  n <- unclass(tab)
  adj <- n
  adj[1, 1] <- n[1, 1] - 0.5; adj[2, 2] <- n[2, 2] - 0.5
  adj[1, 2] <- n[1, 2] + 0.5; adj[2, 1] <- n[2, 1] + 0.5
  ta <- qnorm(sum(n[1, ]) / sum(n)); tb <- qnorm(sum(n[, 1]) / sum(n))
  p00 <- function(r) pbivnorm::pbivnorm(ta, tb, r)
  loglik <- function(r) {
    p11 <- p00(r); pa <- pnorm(ta); pb <- pnorm(tb)
    p <- c(p11, pa - p11, pb - p11, 1 - pa - pb + p11)  # (0,0), (0,1), (1,0), (1,1)
    sum(c(adj[1, 1], adj[1, 2], adj[2, 1], adj[2, 2]) * log(p))
  }
  hand <- optimize(loglik, c(-0.9999, 0.9999), maximum = TRUE, tol = 1e-12)$maximum

  uncorrected <- capture_fit(lavCor(TETRA, ordered = c("a", "b"), output = "cor", zero.add = c(0, 0)))
  list(
    construction = "a = c(rep(0, 30), rep(1, 50)); b = c(rep(0, 30), rep(0, 20), rep(1, 30)); n = 80",
    table = list(rows = "a = 0, 1", cols = "b = 0, 1",
                 counts = list(`a=0` = list(`b=0` = n[1, 1], `b=1` = n[1, 2]),
                               `a=1` = list(`b=0` = n[2, 1], `b=1` = n[2, 2]))),
    call = "lavCor(x, ordered = c(\"a\", \"b\"), output = \"est\", se = \"standard\")",
    options = list(zero.add = I(opts$zero.add), zero.keep.margins = opts$zero.keep.margins),
    rho = rho_row$est, se = rho_row$se, z = rho_row$z, pvalue = rho_row$pvalue,
    thresholds = th_rows,
    adjusted_table = list(`a=0` = list(`b=0` = adj[1, 1], `b=1` = adj[1, 2]),
                          `a=1` = list(`b=0` = adj[2, 1], `b=1` = adj[2, 2])),
    hand_check = list(
      method = "optimize() of the bivariate-normal log-likelihood of adjusted_table, thresholds qnorm(30/80) and qnorm(50/80), pbivnorm",
      rho = hand, abs_diff = abs(hand - rho_row$est)),
    uncorrected = list(
      call = "lavCor(x, ordered = c(\"a\", \"b\"), output = \"cor\", zero.add = c(0, 0))",
      rho = unclass(as.matrix(uncorrected$value))["a", "b"],
      warnings = I(uncorrected$warnings),
      note = "Without the correction the estimate runs to lavaan's bound (the ML estimate is on the boundary) and the SEs cannot be computed. Not a test target."))
}

# ---- published values ---------------------------------------------------------------
# lavaan tutorial, "Multiple groups" (source: github.com/yrosseel/lavaan.org.old,
# tutorial.src/groups.tex; printed by lavaan 0.5-16 and semTools::measurementInvariance).
PUBLISHED <- list(
  hs_inv_configural = list(chisq = "115.851", df = "48", cfi = "0.923", rmsea = "0.097",
                           bic = "7706.822"),
  hs_inv_metric = list(chisq = "124.044", df = "54", cfi = "0.921", rmsea = "0.093",
                       bic = "7680.771"),
  hs_inv_scalar = list(chisq = "164.103", df = "60", cfi = "0.882", rmsea = "0.107",
                       bic = "7686.588")
)
PUBLISHED_OTHER <- list(
  list(what = "hs_inv_configural chi-square, group Pasteur", txt = "64.309",
       get = function(r) r$cases$hs_inv_configural$test$standard$stat.group[1]),
  list(what = "hs_inv_configural chi-square, group Grant-White", txt = "51.542",
       get = function(r) r$cases$hs_inv_configural$test$standard$stat.group[2]),
  list(what = "hs_inv_configural Pasteur visual =~ x2", txt = "0.394",
       get = function(r) param(r$cases$hs_inv_configural, "visual", "=~", "x2", 1)$est),
  list(what = "hs_inv_configural Pasteur visual =~ x2 SE", txt = "0.122",
       get = function(r) param(r$cases$hs_inv_configural, "visual", "=~", "x2", 1)$se),
  list(what = "hs_inv_metric visual =~ x2 (both groups)", txt = "0.599",
       get = function(r) param(r$cases$hs_inv_metric, "visual", "=~", "x2", 2)$est),
  list(what = "hs_inv_metric visual =~ x2 SE", txt = "0.100",
       get = function(r) param(r$cases$hs_inv_metric, "visual", "=~", "x2", 2)$se),
  list(what = "lavTestLRT metric vs configural, Chisq diff", txt = "8.192",
       get = function(r) r$lrt$hs_inv_ml$rows[[2]][["Chisq diff"]]),
  list(what = "lavTestLRT metric vs configural, p", txt = "0.224",
       get = function(r) r$lrt$hs_inv_ml$rows[[2]][["Pr(>Chisq)"]]),
  list(what = "lavTestLRT scalar vs metric, Chisq diff", txt = "40.059",
       get = function(r) r$lrt$hs_inv_ml$rows[[3]][["Chisq diff"]]),
  list(what = "hs_mlr unscaled chi-square (= ML, lavaan tutorial CFA)", txt = "85.306",
       get = function(r) r$cases$hs_mlr$fit_measures$chisq)
)

param <- function(cs, lhs, op, rhs, group) {
  p <- cs$parameters
  i <- which(p$lhs == lhs & p$op == op & p$rhs == rhs & p$group == group)
  if (length(i) != 1L) stop("parameter not found: ", lhs, op, rhs, " group ", group)
  p[i, ]
}

within_printed <- function(got, txt) {
  digits <- if (grepl("\\.", txt)) nchar(sub(".*\\.", "", txt)) else 0
  abs(got - as.numeric(txt)) <= 0.5 * 10^(-digits) + 1e-9
}

check_published <- function(result) {
  out <- list()
  for (m in names(PUBLISHED)) {
    for (k in names(PUBLISHED[[m]])) {
      txt <- PUBLISHED[[m]][[k]]
      got <- result$cases[[m]]$fit_measures[[k]]
      ok <- within_printed(got, txt)
      out[[paste(m, k, sep = ".")]] <- list(published = as.numeric(txt), reproduced = got, ok = ok)
      if (!ok) stop(sprintf("%s %s: published %s, reproduced %.6f", m, k, txt, got))
    }
  }
  for (p in PUBLISHED_OTHER) {
    got <- p$get(result)
    ok <- within_printed(got, p$txt)
    out[[p$what]] <- list(published = as.numeric(p$txt), reproduced = got, ok = ok)
    if (!ok) stop(sprintf("%s: published %s, reproduced %.6f", p$what, p$txt, got))
  }
  out
}

# ---- run ----------------------------------------------------------------------------
fits <- list()
cases <- lapply(names(CASES), function(nm) {
  cat("fitting", nm, "\n")
  spec <- CASES[[nm]]
  out <- summarise_case(spec)
  fits[[nm]] <<- capture_fit(spec$fit())$value
  out
})
names(cases) <- names(CASES)

inv <- paste0("hs_inv_", names(INV_LEVELS))
inv_mlr <- paste0(inv, "_mlr")
long_names <- paste0("long_", names(LONG_LEVELS))
lrts <- list(
  hs_inv_ml = lrt(fits, inv),
  hs_inv_mlr = lrt(fits, inv_mlr, note = "lavTestLRT() default for MLR (test = yuan.bentler.mplus); 'Chisq' holds the standard (unscaled) statistics, 'Chisq diff' the scaled difference."),
  long_ml = lrt(fits, long_names),
  ordinal_wlsmv_mg = lrt(fits, c("ordinal_wlsmv_mg_configural", "ordinal_wlsmv_mg_scalar"),
                         note = "lavTestLRT() default for WLSMV (test = scaled.shifted)."),
  riclpm_2groups = lrt(fits, c("riclpm_2groups_free", "riclpm_2groups_lagged_equal"))
)

# ---- internal checks ----------------------------------------------------------------
chk <- list()
add_check <- function(name, value, ok, what) {
  chk[[name]] <<- list(what = what, value = value, ok = ok)
  if (!ok) stop("check failed: ", name, " (", what, ")")
}
sb_hand <- vapply(seq_len(length(inv_mlr) - 1L), function(i) sb2001(fits[[inv_mlr[i]]], fits[[inv_mlr[i + 1L]]]), 0)
sb_lavaan <- vapply(lrts$hs_inv_mlr$rows[-1], function(r) r[["Chisq diff"]], 0)
add_check("hs_inv_mlr_sb2001_by_hand", I(sb_hand), max(abs(sb_hand - sb_lavaan)) < 1e-8,
          "Satorra-Bentler 2001 scaled differences recomputed from chisq, df and chisq.scaling.factor equal lavTestLRT's 'Chisq diff' (abs diff < 1e-8)")
d_measeq <- abs(cases$hs_inv_scalar_measeq$fit_measures$chisq - cases$hs_inv_scalar$fit_measures$chisq)
add_check("hs_inv_scalar_measeq_equals_group_equal",
          list(chisq_measeq = cases$hs_inv_scalar_measeq$fit_measures$chisq,
               chisq_group_equal = cases$hs_inv_scalar$fit_measures$chisq,
               df_measeq = cases$hs_inv_scalar_measeq$fit_measures$df,
               df_group_equal = cases$hs_inv_scalar$fit_measures$df),
          d_measeq < 1e-6 && cases$hs_inv_scalar_measeq$fit_measures$df == cases$hs_inv_scalar$fit_measures$df,
          "measEq.syntax(ID.fac = 'marker') scalar model has the same chisq (abs diff < 1e-6) and df as cfa(group.equal = c('loadings', 'intercepts'))")
add_check("long_syntax_explicit_longIndNames_identical", identical(LONG_SYNTAX, LONG_SYNTAX_EXPLICIT),
          identical(LONG_SYNTAX, LONG_SYNTAX_EXPLICIT),
          "measEq.syntax with longIndNames given explicitly writes the same syntax as with the default matching by position")
d_cov <- abs(cases$riclpm_cov$fit_measures$chisq - cases$riclpm_cov_observed$fit_measures$chisq)
add_check("riclpm_cov_equivalent_parameterizations",
          list(chisq_RI_on_z = cases$riclpm_cov$fit_measures$chisq,
               chisq_observed_on_z = cases$riclpm_cov_observed$fit_measures$chisq,
               logl_RI_on_z = cases$riclpm_cov$fit_measures$logl,
               logl_observed_on_z = cases$riclpm_cov_observed$fit_measures$logl),
          d_cov < 1e-5,
          "RIx + RIy ~ z and x_t ~ sx*z, y_t ~ sy*z are the same model: equal chisq (abs diff < 1e-5)")
est_ml <- cases$hs_ml_fiml$parameters$est; est_mlr <- cases$hs_mlr_fiml$parameters$est
add_check("hs_fiml_ml_mlr_same_estimates", max(abs(est_ml - est_mlr)), max(abs(est_ml - est_mlr)) < 1e-10,
          "hs_ml_fiml and hs_mlr_fiml have the same point estimates (MLR changes only SEs and test)")

tetra <- tetrachoric_reference()
add_check("tetrachoric_hand", tetra$hand_check$abs_diff, tetra$hand_check$abs_diff < 1e-5,
          "the tetrachoric rho recomputed from the adjusted table equals lavCor's (abs diff < 1e-5)")

result <- list(
  generated_by = "tests/reference/sem2_lavaan.R",
  notes = I(c(
    "parameters: every row of parameterEstimates(fit, standardized = TRUE, remove.nonfree = FALSE) with columns group (1 for single-group fits) and label ('' if none; group.equal and measEq.syntax labels included); fixed parameters have free = false, se = 0 and z/pvalue null.",
    "fit_measures: the requested subset, null where lavaan does not define the measure (e.g. logl/aic/bic under WLSMV; ntotal is taken from lavInspect when fitMeasures omits it). fit_measures_all: everything fitMeasures(fit) returned.",
    "test: lavInspect(fit, 'test') (the list lavTest() returns); under MLR 'standard' is the ML chi-square and 'yuan.bentler.mplus' the scaled one; under WLSMV 'standard' is the DWLS chi-square and 'scaled.shifted' the mean-and-variance adjusted one.",
    "options: from lavInspect(fit, 'options'). MLR in lavaan 0.6-14 uses observed (Hessian) information for SEs and the scaling factor, with and without missing data; ML uses expected information with complete data and observed with missing = 'fiml'.",
    "npar: lavInspect(fit, 'npar') counts every free parameter, including those tied by equality constraints (group.equal, shared labels); fit_measures.npar (fitMeasures) subtracts the equality constraints, so df = (number of sample statistics) - fit_measures.npar. Example: hs_inv_metric has npar 60 and fit_measures.npar 54.",
    "Thresholds are parameters (op '|') and sample statistics: ordinal_wlsmv has 21 thresholds + 15 polychoric correlations = 36 statistics, 28 free parameters (21 thresholds, 4 loadings, 3 factor (co)variances), df 8.",
    "ordinal_wlsmv_mg_scalar: cfi.robust, tli.robust and rmsea.robust are null. lavaan 0.6-14 computes them by refitting a catML model (Savalei 2021), and that refit fails (silently) when thresholds carry group.equal constraints ('unknown label(s) in equality constraint(s)').",
    "lrt: lavTestLRT between consecutive nested models; method parsed from its heading.",
    "All options(useFancyQuotes = FALSE), so warnings and headings use plain quotes."
  )),
  environment = r_environment(c("lavaan", "semTools", "mnormt", "pbivnorm", "numDeriv", "jsonlite")),
  cases = cases,
  lrt = lrts,
  polychoric = polychoric_reference(),
  tetrachoric_empty_cell = tetra,
  measeq = list(
    hs_scalar = list(call = MEASEQ_HS_CALL,
                     arguments = list(group = "school", group.equal = I(c("loadings", "intercepts")),
                                      ID.fac = "marker", other = "semTools defaults (ID.cat = 'Wu.Estabrook.2016', auto = 'all')"),
                     syntax = MEASEQ_HS_SYNTAX),
    longitudinal = list(
      call = "measEq.syntax(configural.model = LONG_CONFIGURAL, data, ID.fac = \"marker\", longFacNames = list(F = c(\"F1\", \"F2\", \"F3\")), long.equal = <level>, auto = \"all\", return.fit = FALSE)",
      configural_model = LONG_CONFIGURAL,
      arguments = list(ID.fac = "marker", longFacNames = LONG_FAC, longIndNames = "not given (indicators matched by their position in each factor; the same syntax results from longIndNames = list(i1 = c('i1_t1', 'i1_t2', 'i1_t3'), ...))",
                       auto = "all", long.partial = "", group = "none",
                       long.equal = list(configural = "", metric = "loadings", scalar = I(c("loadings", "intercepts")))),
      residual_covariances = "auto = 'all': every pair of occasions of the same indicator has a free residual covariance (3 per item, 12 in all) at every level",
      syntax = LONG_SYNTAX)
  ),
  checks = chk
)
result$published_check <- check_published(result)

write_reference_json(result, file.path(paths$here, "sem2_lavaan.json"))
