# Reference fits of linear mixed models with lme4, written to multilevel_lme4.json.
#
# Regenerate (from any directory; paths are found from this file's location):
#   cd tests/reference && ../../.venv/bin/python generate_multilevel.py && Rscript multilevel_lme4.R
#
# Every model is fitted twice, with REML and with ML, each fit started from lme4's
# default starting values (no fit is started from another fit's estimates).
# Optimizer: lmerControl(optimizer = "bobyqa"), i.e. minqa::bobyqa, rather than the
# lme4 >= 1.1-20 default "nloptwrap" (nloptr's BOBYQA with looser default tolerances):
# reference values should be the optimum as tightly as we can get it.  Each fit is
# repeated with the default nloptwrap and the largest differences are stored under
# "optimizer_check" together with the differences from a bobyqa refit with a much
# tighter stopping rule (rhoend = 1e-12): this tells a test how precisely the optimum
# is known (objective_minus_alt < 0 means the stored fit reached the lower objective).
#
# Models (data in data/reference/ and in this directory):
#   sleepstudy            Reaction ~ Days + (Days | Subject)                        (Bates et al. 2015)
#   threelevel_correlated y ~ session + (1 + session | client) + (1 | therapist)
#   threelevel_uncorrelated
#                         y ~ session + (1 | therapist) + (1 | client) + (0 + session | client)
#       the variant statsmodels MixedLM can express: groups = therapist,
#       re_formula = "1", vc_formula = {"client": "0 + C(client)",
#       "client_session": "0 + C(client):session"} (clients are nested in therapists and
#       client IDs are unique, so these are the same model).  statsmodels cannot give
#       the client intercept and slope a correlation inside a therapist group, so the
#       correlated model is a reference for other implementations only.
#   withinbetween         symptoms ~ session + alliance_within_lag1 + alliance_between
#                                   + (1 + session | client)
#       rows whose alliance_within_lag1 is missing (each client's first session) are
#       dropped by lme4's default na.action = na.omit; see "nobs" and "n_rows_dropped".

local({
  args <- commandArgs(trailingOnly = FALSE)
  f <- sub("^--file=", "", args[grep("^--file=", args)])
  here <- if (length(f)) dirname(normalizePath(f[1])) else getwd()
  source(file.path(here, "reference_helpers.R"), local = globalenv())
})
suppressPackageStartupMessages(library(lme4))

paths <- ref_paths()
OPTIMIZER <- "bobyqa"
ALT_OPTIMIZER <- "nloptwrap"
TIGHT_OPTCTRL <- list(rhoend = 1e-12, maxfun = 1e5)

read_sleepstudy <- function() {
  d <- read.csv(file.path(paths$data, "sleepstudy.csv"))
  d$Subject <- factor(d$Subject)
  d
}

read_local <- function(name, factors) {
  d <- read.csv(file.path(paths$here, name), stringsAsFactors = FALSE)
  for (v in factors) d[[v]] <- factor(d[[v]])
  d
}

CASES <- list(
  sleepstudy = list(
    data_file = "data/reference/sleepstudy.csv",
    data = read_sleepstudy(),
    formula = "Reaction ~ Days + (Days | Subject)"
  ),
  threelevel_correlated = list(
    data_file = "tests/reference/ml_threelevel.csv",
    data = read_local("ml_threelevel.csv", c("therapist", "client")),
    formula = "y ~ session + (1 + session | client) + (1 | therapist)"
  ),
  threelevel_uncorrelated = list(
    data_file = "tests/reference/ml_threelevel.csv",
    data = read_local("ml_threelevel.csv", c("therapist", "client")),
    formula = "y ~ session + (1 | therapist) + (1 | client) + (0 + session | client)"
  ),
  withinbetween = list(
    data_file = "tests/reference/ml_withinbetween.csv",
    data = read_local("ml_withinbetween.csv", c("therapist", "client")),
    formula = "symptoms ~ session + alliance_within_lag1 + alliance_between + (1 + session | client)"
  )
)

# Variance components grouped by grouping factor: terms of the same factor that lme4
# keeps in separate blocks (e.g. (1 | client) + (0 + session | client), which lme4
# labels "client" and "client.1") are merged under the factor's name; a correlation
# is only listed when it was estimated.
random_effects <- function(fit) {
  vc <- VarCorr(fit)
  flist <- getME(fit, "flist")
  factor_of_term <- names(flist)[attr(flist, "assign")]
  out <- list()
  for (i in seq_along(vc)) {
    g <- factor_of_term[i]
    m <- vc[[i]]
    terms <- rownames(m)
    if (is.null(out[[g]])) {
      out[[g]] <- list(variances = empty_object(), sds = empty_object(),
                       covariances = empty_object(), correlations = empty_object(),
                       correlated = FALSE)
    }
    for (a in terms) {
      out[[g]]$variances[[a]] <- m[a, a]
      out[[g]]$sds[[a]] <- sqrt(m[a, a])
    }
    if (length(terms) > 1) {
      out[[g]]$correlated <- TRUE
      for (j in 1:(length(terms) - 1)) for (k in (j + 1):length(terms)) {
        key <- paste(terms[j], terms[k], sep = ":")
        out[[g]]$covariances[[key]] <- m[j, k]
        out[[g]]$correlations[[key]] <- m[j, k] / sqrt(m[j, j] * m[k, k])
      }
    }
  }
  out$Residual <- list(variance = sigma(fit)^2, sd = sigma(fit))
  out
}

varcorr_table <- function(fit) {
  d <- as.data.frame(VarCorr(fit))
  lapply(seq_len(nrow(d)), function(i) list(
    grp = d$grp[i], var1 = d$var1[i], var2 = d$var2[i],
    vcov = d$vcov[i], sdcor = d$sdcor[i]))
}

conditional_modes <- function(fit) {
  re <- ranef(fit)
  out <- lapply(names(re), function(g) {
    d <- re[[g]]
    cols <- lapply(names(d), function(term) named_numbers(setNames(d[[term]], rownames(d))))
    names(cols) <- names(d)
    cols
  })
  names(out) <- names(re)
  out
}

fixed_effects <- function(fit) {
  cf <- summary(fit)$coefficients
  out <- lapply(rownames(cf), function(t) list(
    estimate = cf[t, "Estimate"], se = cf[t, "Std. Error"], t = cf[t, "t value"]))
  names(out) <- rownames(cf)
  out
}

fit_one <- function(case, reml, optimizer, optCtrl = list()) {
  capture_fit(lmer(as.formula(case$formula), data = case$data, REML = reml,
                   control = lmerControl(optimizer = optimizer, optCtrl = optCtrl)))
}

compare_fits <- function(fit, alt, label) {
  list(
    alt_optimizer = label,
    alt_warnings = I(alt$warnings),
    max_abs_diff_fixed = max(abs(fixef(fit) - fixef(alt$value))),
    max_rel_diff_fixed = max(abs(fixef(fit) - fixef(alt$value)) / abs(fixef(fit))),
    max_abs_diff_theta = max(abs(getME(fit, "theta") - getME(alt$value, "theta"))),
    max_rel_diff_varcorr = max(abs(as.data.frame(VarCorr(fit))$vcov - as.data.frame(VarCorr(alt$value))$vcov) /
                                 abs(as.data.frame(VarCorr(alt$value))$vcov)),
    abs_diff_sigma = abs(sigma(fit) - sigma(alt$value)),
    objective_minus_alt = as.numeric(-2 * logLik(fit) - (-2 * logLik(alt$value)))
  )
}

summarise_fit <- function(case, reml) {
  res <- fit_one(case, reml, OPTIMIZER)
  fit <- res$value
  alt <- fit_one(case, reml, ALT_OPTIMIZER)
  tight <- fit_one(case, reml, OPTIMIZER, TIGHT_OPTCTRL)
  oi <- fit@optinfo
  ll <- logLik(fit)
  derivs <- oi$derivs
  list(
    REML = reml,
    fixed_effects = fixed_effects(fit),
    vcov_fixed = matrix_to_list(as.matrix(vcov(fit))),
    random_effects = random_effects(fit),
    varcorr_table = varcorr_table(fit),
    theta = named_numbers(getME(fit, "theta")),
    sigma = sigma(fit),
    logLik = as.numeric(ll),
    logLik_df = attr(ll, "df"),
    minus2logLik = -2 * as.numeric(ll),
    REMLcrit = if (reml) REMLcrit(fit) else NA,
    deviance = if (reml) NA else deviance(fit),
    AIC = AIC(fit),
    BIC = BIC(fit),
    nobs = nobs(fit),
    n_rows_dropped = nrow(case$data) - nobs(fit),
    ngroups = named_numbers(ngrps(fit)),
    optimizer = oi$optimizer,
    optimizer_return_code = oi$conv$opt,
    optimizer_message = oi$message,
    feval = oi$feval,
    convergence_messages = I(as.character(unlist(oi$conv$lme4$messages))),
    optimizer_warnings = I(as.character(unlist(oi$warnings))),
    fit_warnings = I(res$warnings),
    fit_messages = I(res$messages),
    max_abs_gradient = if (is.null(derivs)) NA else max(abs(derivs$gradient)),
    max_abs_scaled_gradient = if (is.null(derivs)) NA else
      max(abs(with(derivs, solve(Hessian, gradient)))),
    isSingular = isSingular(fit, tol = 1e-4),
    conditional_modes = conditional_modes(fit),
    optimizer_check = list(
      default_nloptwrap = compare_fits(fit, alt, ALT_OPTIMIZER),
      tight_bobyqa = compare_fits(fit, tight, "bobyqa, optCtrl = list(rhoend = 1e-12, maxfun = 1e5)")
    )
  )
}

cases_out <- lapply(names(CASES), function(nm) {
  case <- CASES[[nm]]
  cat("fitting", nm, "\n")
  list(
    data_file = case$data_file,
    n_rows = nrow(case$data),
    formula = case$formula,
    fits = list(REML = summarise_fit(case, TRUE), ML = summarise_fit(case, FALSE))
  )
})
names(cases_out) <- names(CASES)

# Published REML fit of the sleepstudy model (Bates, Maechler, Bolker & Walker 2015,
# JSS 67(1), section 3 / summary(fm1)); the script stops if these are not reproduced to
# the printed digits.
PUBLISHED_SLEEPSTUDY_REML <- list(
  "fixed (Intercept) estimate" = c("251.405", "fixed_effects", "(Intercept)", "estimate"),
  "fixed (Intercept) se" = c("6.825", "fixed_effects", "(Intercept)", "se"),
  "fixed Days estimate" = c("10.467", "fixed_effects", "Days", "estimate"),
  "fixed Days se" = c("1.546", "fixed_effects", "Days", "se"),
  "Subject variance (Intercept)" = c("612.09", "random_effects", "Subject", "variances", "(Intercept)"),
  "Subject variance Days" = c("35.07", "random_effects", "Subject", "variances", "Days"),
  "Subject correlation" = c("0.066", "random_effects", "Subject", "correlations", "(Intercept):Days"),
  "Residual variance" = c("654.94", "random_effects", "Residual", "variance"),
  "REML criterion" = c("1743.628", "REMLcrit")
)

check_published <- function(fit_json) {
  out <- lapply(names(PUBLISHED_SLEEPSTUDY_REML), function(nm) {
    spec <- PUBLISHED_SLEEPSTUDY_REML[[nm]]
    got <- fit_json[[spec[-1]]]
    digits <- nchar(sub(".*\\.", "", spec[1]))
    ok <- abs(got - as.numeric(spec[1])) <= 0.5 * 10^(-digits) + 1e-9
    if (!ok) stop(sprintf("sleepstudy %s: published %s, reproduced %.6f", nm, spec[1], got))
    list(published = as.numeric(spec[1]), reproduced = got, ok = ok)
  })
  names(out) <- names(PUBLISHED_SLEEPSTUDY_REML)
  out
}

out <- list(
  generated_by = "tests/reference/multilevel_lme4.R",
  notes = I(c(
    paste0("control = lmerControl(optimizer = \"", OPTIMIZER, "\") for every fit; ",
           "optimizer_check repeats the fit with lme4's default \"", ALT_OPTIMIZER,
           "\" and with bobyqa at rhoend = 1e-12 and reports the largest differences."),
    "REML fits: logLik, AIC and BIC are the REML log-likelihood and criteria (as lme4 reports them); REMLcrit = -2 * REML logLik; deviance is null.",
    "ML fits: deviance = -2 * logLik; REMLcrit is null.",
    "fixed_effects se and t use the REML (or ML) estimate of the covariance parameters, as summary(fit) does; no denominator df or p-values.",
    "random_effects merges lme4 blocks of the same grouping factor; varcorr_table is as.data.frame(VarCorr(fit)) unchanged (lme4 names the second block of a factor 'client.1').",
    "conditional_modes are ranef(fit) (BLUPs), by grouping factor, term and level.",
    "isSingular uses isSingular(fit, tol = 1e-4)."
  )),
  environment = r_environment(c("lme4", "Matrix", "minqa", "nloptr", "jsonlite")),
  published_check = check_published(cases_out$sleepstudy$fits$REML),
  cases = cases_out
)

write_reference_json(out, file.path(paths$here, "multilevel_lme4.json"))
