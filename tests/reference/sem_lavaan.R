# Reference fits of structural equation models with lavaan (and polychoric
# correlations with psych and lavaan), written to sem_lavaan.json.
#
# Regenerate (from any directory; paths are found from this file's location):
#   cd tests/reference && ../../.venv/bin/python generate_sem.py && Rscript sem_lavaan.R
#
# Models ("models" in the JSON):
#   hs_cfa            three-factor CFA of Holzinger & Swineford (1939), lavaan tutorial
#                     syntax, cfa() defaults (ML, expected information, N likelihood).
#   poldem_sem        Bollen's (1989) political democracy SEM, lavaan tutorial syntax
#                     with the six residual covariances, sem() defaults.
#   riclpm            RI-CLPM (Hamaker, Kuiper & Grasman 2015) for 4 waves of x (alliance)
#                     and y (symptoms), syntax of Mulder & Hamaker (2021,
#                     https://jeroendmulder.github.io/RI-CLPM/lavaan.html) fitted as there
#                     with lavaan(meanstructure = TRUE, int.ov.free = TRUE) on
#                     sem_riclpm.csv (complete data, so the default listwise = all rows).
#   riclpm_fiml       the same on sem_riclpm_missing.csv with missing = "fiml".
#   clpm, clpm_fiml   the traditional cross-lagged panel model on the same data: the
#                     RI-CLPM syntax without the random intercepts (equivalently, the
#                     RI variances and covariance fixed at 0), so clpm is nested in
#                     riclpm with 3 fewer parameters.
#   bfi_n_wlsmv       one-factor CFA of the ordinal items N1-N5 (psychTools::bfi,
#                     complete cases) with ordered = TRUE and estimator = "WLSMV"
#                     (DWLS estimates, robust SEs, mean-and-variance adjusted test);
#                     "test" holds both the unscaled DWLS and the scaled-shifted chi-square.
# "polychoric": psych::polychoric and lavaan::lavCor(ordered = ) on the same N1-N5 data.
#
# Each model stores every row of parameterEstimates(fit, standardized = TRUE) (fixed
# parameters included, flagged free = false), the requested fit measures (null where
# lavaan does not define them, e.g. logl/aic/bic under WLSMV), all of fitMeasures(fit),
# lavInspect(fit, "test"), the estimation options that change the numbers (information,
# likelihood, se, test, missing), convergence, and any warnings lavaan gave.

local({
  args <- commandArgs(trailingOnly = FALSE)
  f <- sub("^--file=", "", args[grep("^--file=", args)])
  here <- if (length(f)) dirname(normalizePath(f[1])) else getwd()
  source(file.path(here, "reference_helpers.R"), local = globalenv())
})
suppressPackageStartupMessages({
  library(lavaan)
  library(psych)
})

paths <- ref_paths()

REQUESTED_FIT <- c("chisq", "df", "pvalue", "cfi", "tli", "rmsea", "rmsea.ci.lower",
                   "rmsea.ci.upper", "srmr", "logl", "aic", "bic", "npar", "ntotal")

# ---- data ---------------------------------------------------------------------------
HS <- read.csv(file.path(paths$data, "HolzingerSwineford1939.csv"))
PD <- read.csv(file.path(paths$data, "PoliticalDemocracy.csv"))
BFI <- read.csv(file.path(paths$data, "bfi.csv"), row.names = 1)
N_ITEMS <- c("N1", "N2", "N3", "N4", "N5")
BFI_N <- BFI[complete.cases(BFI[, N_ITEMS]), N_ITEMS]
PANEL <- read.csv(file.path(paths$here, "sem_riclpm.csv"))
PANEL_MISSING <- read.csv(file.path(paths$here, "sem_riclpm_missing.csv"))

# ---- syntax -------------------------------------------------------------------------
HS_MODEL <- "
visual  =~ x1 + x2 + x3
textual =~ x4 + x5 + x6
speed   =~ x7 + x8 + x9
"

PD_MODEL <- "
# measurement model
ind60 =~ x1 + x2 + x3
dem60 =~ y1 + y2 + y3 + y4
dem65 =~ y5 + y6 + y7 + y8
# regressions
dem60 ~ ind60
dem65 ~ ind60 + dem60
# residual correlations
y1 ~~ y5
y2 ~~ y4 + y6
y3 ~~ y7
y4 ~~ y8
y6 ~~ y8
"

WITHIN_PART <- "
# within-person components
wx1 =~ 1*x1
wx2 =~ 1*x2
wx3 =~ 1*x3
wx4 =~ 1*x4
wy1 =~ 1*y1
wy2 =~ 1*y2
wy3 =~ 1*y3
wy4 =~ 1*y4
# lagged effects between the within-person components
wx2 + wy2 ~ wx1 + wy1
wx3 + wy3 ~ wx2 + wy2
wx4 + wy4 ~ wx3 + wy3
# covariance of the within components at wave 1 and of the innovations
wx1 ~~ wy1
wx2 ~~ wy2
wx3 ~~ wy3
wx4 ~~ wy4
# (residual) variances of the within components
wx1 ~~ wx1
wy1 ~~ wy1
wx2 ~~ wx2
wy2 ~~ wy2
wx3 ~~ wx3
wy3 ~~ wy3
wx4 ~~ wx4
wy4 ~~ wy4
"

RICLPM_MODEL <- paste0("
# between part: random intercepts
RIx =~ 1*x1 + 1*x2 + 1*x3 + 1*x4
RIy =~ 1*y1 + 1*y2 + 1*y3 + 1*y4
RIx ~~ RIx
RIy ~~ RIy
RIx ~~ RIy
", WITHIN_PART)

CLPM_MODEL <- WITHIN_PART

BFI_N_MODEL <- "N =~ N1 + N2 + N3 + N4 + N5"

MODELS <- list(
  hs_cfa = list(
    data_file = "data/reference/HolzingerSwineford1939.csv", syntax = HS_MODEL,
    call = "cfa(model, data = HolzingerSwineford1939)",
    fit = function() cfa(HS_MODEL, data = HS)),
  poldem_sem = list(
    data_file = "data/reference/PoliticalDemocracy.csv", syntax = PD_MODEL,
    call = "sem(model, data = PoliticalDemocracy)",
    fit = function() sem(PD_MODEL, data = PD)),
  riclpm = list(
    data_file = "tests/reference/sem_riclpm.csv", syntax = RICLPM_MODEL,
    call = "lavaan(model, data, meanstructure = TRUE, int.ov.free = TRUE)",
    fit = function() lavaan(RICLPM_MODEL, data = PANEL, meanstructure = TRUE, int.ov.free = TRUE)),
  riclpm_fiml = list(
    data_file = "tests/reference/sem_riclpm_missing.csv", syntax = RICLPM_MODEL,
    call = "lavaan(model, data, missing = \"fiml\", meanstructure = TRUE, int.ov.free = TRUE)",
    fit = function() lavaan(RICLPM_MODEL, data = PANEL_MISSING, missing = "fiml",
                            meanstructure = TRUE, int.ov.free = TRUE)),
  clpm = list(
    data_file = "tests/reference/sem_riclpm.csv", syntax = CLPM_MODEL,
    call = "lavaan(model, data, meanstructure = TRUE, int.ov.free = TRUE)",
    fit = function() lavaan(CLPM_MODEL, data = PANEL, meanstructure = TRUE, int.ov.free = TRUE)),
  clpm_fiml = list(
    data_file = "tests/reference/sem_riclpm_missing.csv", syntax = CLPM_MODEL,
    call = "lavaan(model, data, missing = \"fiml\", meanstructure = TRUE, int.ov.free = TRUE)",
    fit = function() lavaan(CLPM_MODEL, data = PANEL_MISSING, missing = "fiml",
                            meanstructure = TRUE, int.ov.free = TRUE)),
  bfi_n_wlsmv = list(
    data_file = "data/reference/bfi.csv (N1-N5, complete cases)", syntax = BFI_N_MODEL,
    call = "cfa(model, data, ordered = TRUE, estimator = \"WLSMV\")",
    fit = function() cfa(BFI_N_MODEL, data = BFI_N, ordered = TRUE, estimator = "WLSMV"))
)

# ---- extraction ---------------------------------------------------------------------
parameter_rows <- function(fit) {
  pe <- parameterEstimates(fit, standardized = TRUE, remove.nonfree = FALSE)
  pt <- parTable(fit)
  key_pe <- paste(pe$lhs, pe$op, pe$rhs)
  key_pt <- paste(pt$lhs, pt$op, pt$rhs)
  pe$free <- pt$free[match(key_pe, key_pt)] > 0
  keep <- intersect(c("lhs", "op", "rhs", "label", "free", "est", "se", "z", "pvalue",
                      "ci.lower", "ci.upper", "std.lv", "std.all", "std.nox"), names(pe))
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
    keep <- intersect(c("test", "stat", "stat.group", "df", "refdistr", "pvalue",
                        "scaling.factor", "shift.parameter", "trace.UGamma"), names(t))
    t[keep]
  })
  names(out) <- names(tests)
  out
}

summarise_model <- function(spec) {
  res <- capture_fit(spec$fit())
  fit <- res$value
  opts <- lavInspect(fit, "options")
  post <- capture_fit(lavInspect(fit, "post.check"))
  list(
    data_file = spec$data_file,
    call = spec$call,
    syntax = spec$syntax,
    options = list(
      estimator = opts$estimator, se = opts$se, test = I(opts$test),
      information = I(opts$information), h1.information = I(opts$h1.information),
      likelihood = opts$likelihood, missing = opts$missing,
      meanstructure = opts$meanstructure, parameterization = opts$parameterization),
    nobs = lavInspect(fit, "nobs"),
    ntotal = lavInspect(fit, "ntotal"),
    npar = lavInspect(fit, "npar"),
    converged = lavInspect(fit, "converged"),
    iterations = lavInspect(fit, "iterations"),
    optimizer = opts$optim.method,
    post_check_ok = isTRUE(post$value),
    warnings = I(c(res$warnings, post$warnings)),
    parameters = parameter_rows(fit),
    fit_measures = fit_measures(fit)$requested,
    fit_measures_all = fit_measures(fit)$all,
    test = test_statistics(fit)
  )
}

# ---- polychoric correlations --------------------------------------------------------
polychoric_reference <- function() {
  pc <- capture_fit(psych::polychoric(BFI_N))
  lav_cor <- capture_fit(lavCor(BFI_N, ordered = N_ITEMS, output = "cor"))
  lav_th <- lavCor(BFI_N, ordered = N_ITEMS, output = "th")
  lav_est <- lavCor(BFI_N, ordered = N_ITEMS, output = "est", se = "standard")
  names(lav_est)[names(lav_est) == "est.std"] <- "est"  # lavCor labels the column est.std
  lav_estimates <- lav_est[, c("lhs", "op", "rhs", "est", "se")]
  rownames(lav_estimates) <- NULL
  tau <- pc$value$tau
  colnames(tau) <- paste0("t", seq_len(ncol(tau)))
  rho_psych <- unclass(pc$value$rho)
  rho_lavaan <- unclass(as.matrix(lav_cor$value))
  list(
    data_file = "data/reference/bfi.csv",
    items = I(N_ITEMS),
    n = nrow(BFI_N),
    sample = "complete cases on N1-N5",
    psych = list(
      call = "psych::polychoric(x)  # defaults: smooth = TRUE, global = TRUE, correct = 0.5",
      rho = matrix_to_list(rho_psych),
      tau = matrix_to_list(tau),
      warnings = I(pc$warnings)),
    lavaan = list(
      call = "lavCor(x, ordered = items) and output = \"th\"; SEs from output = \"est\", se = \"standard\"",
      rho = matrix_to_list(rho_lavaan),
      thresholds = named_numbers(lav_th),
      estimates = lav_estimates,
      warnings = I(lav_cor$warnings)),
    max_abs_diff_rho_psych_lavaan = max(abs(rho_psych - rho_lavaan)),
    max_abs_diff_tau_psych_lavaan = max(abs(as.vector(t(pc$value$tau)) - as.vector(lav_th)))
  )
}

# ---- published values ---------------------------------------------------------------
# Printed values from the lavaan tutorial (https://lavaan.ugent.be/tutorial/) for these
# two data sets; the script stops if they are not reproduced to the printed digits.
PUBLISHED <- list(
  hs_cfa = list(chisq = "85.306", df = "24", cfi = "0.931", tli = "0.896", rmsea = "0.092",
                rmsea.ci.lower = "0.071", rmsea.ci.upper = "0.114", srmr = "0.065",
                logl = "-3737.745", aic = "7517.490", bic = "7595.339"),
  poldem_sem = list(chisq = "38.125", df = "35", logl = "-1547.791", aic = "3157.582",
                    bic = "3229.424")
)

check_published <- function(models) {
  out <- list()
  for (m in names(PUBLISHED)) {
    for (k in names(PUBLISHED[[m]])) {
      txt <- PUBLISHED[[m]][[k]]
      digits <- if (grepl("\\.", txt)) nchar(sub(".*\\.", "", txt)) else 0
      got <- models[[m]]$fit_measures[[k]]
      ok <- abs(got - as.numeric(txt)) <= 0.5 * 10^(-digits) + 1e-9
      out[[paste(m, k, sep = ".")]] <- list(published = as.numeric(txt), reproduced = got, ok = ok)
      if (!ok) stop(sprintf("%s %s: published %s, reproduced %.6f", m, k, txt, got))
    }
  }
  out
}

# ---- run ----------------------------------------------------------------------------
models <- lapply(names(MODELS), function(nm) {
  cat("fitting", nm, "\n")
  summarise_model(MODELS[[nm]])
})
names(models) <- names(MODELS)

out <- list(
  generated_by = "tests/reference/sem_lavaan.R",
  notes = I(c(
    "parameters: every row of parameterEstimates(fit, standardized = TRUE, remove.nonfree = FALSE); fixed parameters have free = false, se = 0 and z/pvalue null.",
    "fit_measures: the requested subset; null where lavaan does not define the measure (logl, aic, bic under WLSMV; ntotal, which fitMeasures omits under WLSMV, is taken from lavInspect(fit, 'ntotal')). fit_measures_all: everything fitMeasures(fit) returned.",
    "test: lavInspect(fit, 'test'); for bfi_n_wlsmv 'standard' is the unscaled DWLS chi-square and 'scaled.shifted' the WLSMV (mean-and-variance adjusted) one.",
    "lavaan's ML uses the N (not N - 1) likelihood by default (options.likelihood = 'normal'); complete-data ML uses expected information, missing = 'fiml' uses observed information (options.information).",
    "RI-CLPM / CLPM on complete data use the default missing = 'listwise' (no row is dropped); the Mulder & Hamaker page uses missing = 'ML', which gives the same estimates on complete data."
  )),
  environment = r_environment(c("lavaan", "psych", "mnormt", "pbivnorm", "numDeriv", "jsonlite")),
  published_check = check_published(models),
  models = models,
  polychoric = polychoric_reference()
)

write_reference_json(out, file.path(paths$here, "sem_lavaan.json"))
