# Marginal and conditional R2 of linear mixed models (Nakagawa, Johnson & Schielzeth 2017,
# with Johnson's 2014 extension to random slopes), written to r2_nakagawa.json.
#
# Regenerate (from any directory; paths are found from this file's location):
#   cd tests/reference && Rscript r2_nakagawa.R
#
# Data: data/reference/sleepstudy.csv and the two simulated multilevel files of this folder
# (ml_threelevel.csv, ml_withinbetween.csv, written by generate_multilevel.py); no new data.
#
# Each model is fitted by lme4 (lmerControl(optimizer = "bobyqa"), as multilevel_lme4.R) and
# its R2 is computed here from lme4's own pieces, by the formula:
#
#   var_f = var(X %*% fixef(fit))                     (R's var(): denominator n - 1)
#   var_r = sum over random-effect terms k of mean_i z_ik' Sigma_k z_ik
#           (Z_k = getME(fit, "mmList")[[k]], Sigma_k = VarCorr(fit)[[k]])
#   var_e = sigma(fit)^2
#   R2_marginal    = var_f / (var_f + var_r + var_e)
#   R2_conditional = (var_f + var_r) / (var_f + var_r + var_e)
#
# and, as an independent check, by performance::r2_nakagawa() (stored under "performance";
# the script stops if the two differ by more than 1e-8). One known exception: performance
# 0.10.2 (insight 0.19.0) leaves out the slope variance of an uncorrelated random slope
# written "(Days || Subject)" (lme4's separate term "0 + Days | Subject"); its var.random is
# the intercept variance alone. For that case (performance_expected_to_agree = FALSE) the
# values are stored with the difference, and the formula above, which counts every term as
# Johnson (2014) does, is the reference. The fitted estimates (fixed effects,
# each term's covariance matrix, residual variance) are stored too, so that a test can feed
# lme4's estimates into the Python formula and check the formula alone, apart from the fit.

local({
  args <- commandArgs(trailingOnly = FALSE)
  f <- sub("^--file=", "", args[grep("^--file=", args)])
  here <- if (length(f)) dirname(normalizePath(f[1])) else getwd()
  source(file.path(here, "reference_helpers.R"), local = globalenv())
})
suppressPackageStartupMessages({
  library(lme4)
  library(performance)
})

paths <- ref_paths()

read_local <- function(name, factors) {
  d <- read.csv(file.path(paths$here, name), stringsAsFactors = FALSE)
  for (v in factors) d[[v]] <- factor(d[[v]])
  d
}
sleepstudy_data <- read.csv(file.path(paths$data, "sleepstudy.csv"))
sleepstudy_data$Subject <- factor(sleepstudy_data$Subject)
threelevel <- read_local("ml_threelevel.csv", c("therapist", "client"))
withinbetween <- read_local("ml_withinbetween.csv", c("therapist", "client"))

CASES <- list(
  sleepstudy_reml = list(data_file = "data/reference/sleepstudy.csv", data = sleepstudy_data,
                         formula = "Reaction ~ Days + (Days | Subject)", reml = TRUE),
  sleepstudy_ml = list(data_file = "data/reference/sleepstudy.csv", data = sleepstudy_data,
                       formula = "Reaction ~ Days + (Days | Subject)", reml = FALSE),
  sleepstudy_uncorrelated = list(data_file = "data/reference/sleepstudy.csv",
                                 data = sleepstudy_data,
                                 formula = "Reaction ~ Days + (Days || Subject)", reml = TRUE,
                                 performance_agrees = FALSE),
  threelevel_null = list(data_file = "tests/reference/ml_threelevel.csv", data = threelevel,
                         formula = "y ~ 1 + (1 | client) + (1 | therapist)", reml = TRUE),
  threelevel_correlated = list(data_file = "tests/reference/ml_threelevel.csv",
                               data = threelevel,
                               formula = "y ~ session + (1 + session | client) + (1 | therapist)",
                               reml = TRUE),
  threelevel_uncorrelated = list(data_file = "tests/reference/ml_threelevel.csv",
                                 data = threelevel,
                                 formula = "y ~ session + (1 + session || client) + (1 | therapist)",
                                 reml = FALSE, performance_agrees = FALSE),
  withinbetween = list(data_file = "tests/reference/ml_withinbetween.csv", data = withinbetween,
                       formula = paste("symptoms ~ session + alliance_within_lag1 +",
                                       "alliance_between + (1 + session | client)"),
                       reml = TRUE),
  withinbetween_interaction = list(
    data_file = "tests/reference/ml_withinbetween.csv", data = withinbetween,
    formula = paste("symptoms ~ session * alliance_between + alliance_within_lag1 +",
                    "(1 + session | client)"),
    reml = FALSE)
)

covariance_blocks <- function(fit) {
  vc <- VarCorr(fit)
  lapply(seq_along(vc), function(k) {
    m <- vc[[k]]
    list(group = names(vc)[k], terms = I(rownames(m)), matrix = lapply(seq_len(nrow(m)),
         function(i) unname(as.numeric(m[i, ]))))
  })
}

r2_by_formula <- function(fit) {
  X <- getME(fit, "X")
  var_f <- var(as.vector(X %*% fixef(fit)))
  vc <- VarCorr(fit)
  mm <- getME(fit, "mmList")
  stopifnot(length(vc) == length(mm))
  per_term <- vapply(seq_along(vc), function(k) {
    Z <- mm[[k]]
    S <- vc[[k]][colnames(Z), colnames(Z), drop = FALSE]
    mean(rowSums((Z %*% S) * Z))
  }, numeric(1))
  var_r <- sum(per_term)
  var_e <- sigma(fit)^2
  total <- var_f + var_r + var_e
  list(var_fixed = var_f, var_random = var_r, var_random_by_term = named_numbers(
         setNames(per_term, names(vc))), var_residual = var_e,
       r2_marginal = var_f / total, r2_conditional = (var_f + var_r) / total)
}

summarise <- function(case) {
  res <- capture_fit(lmer(as.formula(case$formula), data = case$data, REML = case$reml,
                          control = lmerControl(optimizer = "bobyqa")))
  fit <- res$value
  r2 <- r2_by_formula(fit)
  perf <- capture_fit(r2_nakagawa(fit))
  checked <- list(r2_marginal = unname(perf$value$R2_marginal),
                  r2_conditional = unname(perf$value$R2_conditional),
                  warnings = I(perf$warnings))
  gap <- max(abs(c(checked$r2_marginal - r2$r2_marginal,
                   checked$r2_conditional - r2$r2_conditional)))
  agrees <- is.null(case$performance_agrees) || case$performance_agrees
  if (agrees && (!is.finite(gap) || gap > 1e-8)) {
    stop(sprintf("%s: the formula and performance::r2_nakagawa differ by %g", case$formula, gap))
  }
  list(
    data_file = case$data_file,
    formula = case$formula,
    REML = case$reml,
    nobs = nobs(fit),
    ngroups = named_numbers(ngrps(fit)),
    fixed_effects = named_numbers(fixef(fit)),
    covariance_blocks = covariance_blocks(fit),
    sigma2 = sigma(fit)^2,
    logLik = as.numeric(logLik(fit)),
    isSingular = isSingular(fit, tol = 1e-4),
    fit_warnings = I(res$warnings),
    r2 = r2,
    performance = checked,
    performance_minus_formula = gap,
    performance_expected_to_agree = agrees
  )
}

out <- list(
  description = paste("Nakagawa-Johnson-Schielzeth marginal and conditional R2 of lme4 fits,",
                      "by the formula (r2) and by performance::r2_nakagawa (performance)"),
  environment = r_environment(c("lme4", "Matrix", "performance", "insight", "jsonlite")),
  cases = lapply(CASES, summarise)
)
write_reference_json(out, file.path(paths$here, "r2_nakagawa.json"))
