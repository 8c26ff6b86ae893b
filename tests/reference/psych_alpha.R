# Reference reliability coefficients with psych, written to psych_alpha.json.
#
# Regenerate (from any directory; paths are found from this file's location):
#   cd tests/reference && Rscript psych_alpha.R
#
# Data: the neuroticism items N1-N5 of psychTools::bfi (data/reference/bfi.csv,
# 2800 rows, first column = row names).  Two samples:
#   all_rows_pairwise  all 2800 rows; psych::alpha's default use = "pairwise" (each
#                      covariance from the rows where both items are present).  This is
#                      the published case: raw alpha .8140, standardized .8147.
#   complete_cases     the 2694 rows with N1-N5 all present (what a listwise
#                      implementation sees).
# For each sample:
#   alpha     psych::alpha(x): total (raw_alpha, std.alpha, G6(smc), average_r, S/N,
#             ase, mean, sd, median_r), confidence intervals, alpha if item dropped,
#             item statistics.
#             ci.feldt    = psych's x$feldt: alpha.ci(raw_alpha, n.obs = nrow(x), n.var),
#                           F-distribution interval (Feldt, Woodruff & Salih 1987), with
#                           n.obs = every row of x, including rows with missing items.
#             ci.duhachek = raw_alpha +/- 1.96 * ase, as print.psych computes it
#                           (Duhachek & Iacobucci 2004); psych hard-codes 1.96.
#   omega     psych::omega(x, nfactors = 1): omega.tot, omega_h, alpha, G6.  psych
#             says "Omega_h for 1 factor is not meaningful, just omega_t" and warns that
#             omega_h is not meaningful with one factor; both are stored under
#             "warnings".  It fits fa(..., fm = "minres") to cor(x, use = "pairwise"),
#             so the same numbers are recomputed by hand from
#             fa(R, nfactors = 1, fm = "minres") under omega_one_factor_minres:
#               omega_total = 1 - sum(uniquenesses) / sum(R)
#               omega_h     = sum(loadings)^2 / sum(R)
#             (they differ because a one-factor model does not reproduce R exactly).
#   omega_cfa (complete cases only): McDonald's omega from a one-factor ML CFA in lavaan
#             (std.lv = TRUE):  sum(lambda)^2 / (sum(lambda)^2 + sum(theta)),
#             i.e. model-implied total variance, for implementations that go through a CFA.

local({
  args <- commandArgs(trailingOnly = FALSE)
  f <- sub("^--file=", "", args[grep("^--file=", args)])
  here <- if (length(f)) dirname(normalizePath(f[1])) else getwd()
  source(file.path(here, "reference_helpers.R"), local = globalenv())
})
suppressPackageStartupMessages({
  library(psych)
  library(lavaan)
})

paths <- ref_paths()
ITEMS <- c("N1", "N2", "N3", "N4", "N5")
BFI <- read.csv(file.path(paths$data, "bfi.csv"), row.names = 1)
SAMPLES <- list(
  all_rows_pairwise = BFI[, ITEMS],
  complete_cases = BFI[complete.cases(BFI[, ITEMS]), ITEMS]
)

df_rows_to_list <- function(d) {
  out <- lapply(rownames(d), function(r) named_numbers(setNames(unlist(d[r, ]), names(d))))
  names(out) <- rownames(d)
  out
}

alpha_reference <- function(x) {
  res <- capture_fit(psych::alpha(x))
  a <- res$value
  tot <- named_numbers(setNames(unlist(a$total), names(a$total)))
  list(
    call = "psych::alpha(x)  # defaults: use = \"pairwise\", check.keys = FALSE",
    n_rows = nrow(x),
    total = tot,
    ci.feldt = list(lower = unlist(a$feldt$lower.ci), alpha = unlist(a$feldt$alpha),
                    upper = unlist(a$feldt$upper.ci), n.obs = nrow(x), n.var = ncol(x),
                    p.val = 0.05),
    ci.duhachek = list(lower = tot$raw_alpha - 1.96 * tot$ase, alpha = tot$raw_alpha,
                       upper = tot$raw_alpha + 1.96 * tot$ase, z = 1.96),
    alpha_drop = df_rows_to_list(a$alpha.drop),
    item_stats = df_rows_to_list(a$item.stats),
    warnings = I(res$warnings),
    messages = I(res$messages)
  )
}

omega_reference <- function(x) {
  res <- capture_fit(psych::omega(x, nfactors = 1, plot = FALSE))
  o <- res$value
  R <- cor(x, use = "pairwise")
  fm <- capture_fit(psych::fa(R, nfactors = 1, fm = "minres", n.obs = nrow(x)))
  lambda <- as.vector(fm$value$loadings)
  names(lambda) <- rownames(fm$value$loadings)
  # psych sign-flips so that the loadings are positive; do the same by hand
  if (sum(lambda) < 0) lambda <- -lambda
  u2 <- fm$value$uniquenesses
  list(
    psych_omega = list(
      call = "psych::omega(x, nfactors = 1, plot = FALSE)  # fm = \"minres\", cor(x, use = \"pairwise\")",
      omega.tot = o$omega.tot,
      omega_h = o$omega_h,
      alpha = o$alpha,
      G6 = o$G6,
      warnings = I(res$warnings),
      messages = I(res$messages)),
    omega_one_factor_minres = list(
      call = "psych::fa(cor(x, use = \"pairwise\"), nfactors = 1, fm = \"minres\")",
      loadings = named_numbers(lambda),
      uniquenesses = named_numbers(u2),
      sum_R = sum(R),
      omega_total = 1 - sum(u2) / sum(R),
      omega_h = sum(lambda)^2 / sum(R),
      warnings = I(fm$warnings))
  )
}

omega_cfa_reference <- function(x) {
  res <- capture_fit(cfa("N =~ N1 + N2 + N3 + N4 + N5", data = x, std.lv = TRUE))
  pe <- parameterEstimates(res$value)
  lambda <- pe$est[pe$op == "=~"]
  theta <- pe$est[pe$op == "~~" & pe$lhs == pe$rhs & pe$lhs %in% ITEMS]
  list(
    call = "lavaan::cfa(\"N =~ N1 + N2 + N3 + N4 + N5\", data = x, std.lv = TRUE)  # ML",
    n = lavInspect(res$value, "nobs"),
    loadings = named_numbers(setNames(lambda, pe$rhs[pe$op == "=~"])),
    residual_variances = named_numbers(setNames(theta, ITEMS)),
    omega = sum(lambda)^2 / (sum(lambda)^2 + sum(theta)),
    warnings = I(res$warnings)
  )
}

PUBLISHED <- list(raw_alpha = "0.8140", std.alpha = "0.8147")

samples_out <- lapply(names(SAMPLES), function(nm) {
  x <- SAMPLES[[nm]]
  out <- c(list(alpha = alpha_reference(x)), omega_reference(x))
  if (nm == "complete_cases") out$omega_cfa <- omega_cfa_reference(x)
  out
})
names(samples_out) <- names(SAMPLES)

published_check <- lapply(names(PUBLISHED), function(k) {
  got <- samples_out$all_rows_pairwise$alpha$total[[k]]
  ok <- abs(got - as.numeric(PUBLISHED[[k]])) <= 0.5e-4 + 1e-12
  if (!ok) stop(sprintf("%s: published %s, reproduced %.6f", k, PUBLISHED[[k]], got))
  list(published = as.numeric(PUBLISHED[[k]]), reproduced = got, ok = ok)
})
names(published_check) <- names(PUBLISHED)

out <- list(
  generated_by = "tests/reference/psych_alpha.R",
  data_file = "data/reference/bfi.csv",
  items = I(ITEMS),
  environment = r_environment(c("psych", "GPArotation", "lavaan", "jsonlite")),
  published_check = published_check,
  samples = samples_out
)

write_reference_json(out, file.path(paths$here, "psych_alpha.json"))
