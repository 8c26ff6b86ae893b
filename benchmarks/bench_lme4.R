# Time lme4::lmer on one benchmark dataset; called by bench_engine.py.
#
#   Rscript bench_lme4.R <data.csv> <formula> <repeats> <out.json>
#
# Fits the formula by REML with lme4's defaults (optimizer nloptwrap), `repeats` times,
# timing only the lmer() call (system.time, elapsed seconds: no R start-up, no CSV reading;
# and the CPU seconds of the R process, user + system, in `cpu`).
# Then, untimed, a tight fit (bobyqa, rhoend = 1e-10) from lme4's default start: the
# reference for the benchmark's differences in estimates (nloptwrap's default tolerances
# leave visible differences, see tests/reference/README.md).
# Peak memory is R's own: the growth of gc()'s "max used" Mb over the fits from the memory
# in use before them (gc(reset = TRUE)), so the data and packages already loaded do not count.
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
data <- read.csv(args[1])
formula <- as.formula(args[2])
repeats <- as.integer(args[3])
times <- numeric(repeats)
cpu <- numeric(repeats)
warned <- character(0)
before <- sum(gc(reset = TRUE)[, 2])
for (i in seq_len(repeats)) {
  used <- system.time(fit <- withCallingHandlers(
    lmer(formula, data, REML = TRUE),
    warning = function(w) {warned <<- c(warned, conditionMessage(w)); invokeRestart("muffleWarning")},
    message = function(m) invokeRestart("muffleMessage")))
  times[i] <- used[["elapsed"]]
  cpu[i] <- used[["user.self"]] + used[["sys.self"]]
}
peak <- sum(gc()[, 6]) - before
summarise <- function(fit, warned) {
  vc <- as.data.frame(VarCorr(fit))
  key <- ifelse(vc$grp == "Residual", "residual",
                paste(vc$grp, vc$var1, ifelse(is.na(vc$var2), "", vc$var2), sep = ":"))
  list(loglik = as.numeric(logLik(fit)), fixed = as.list(fixef(fit)),
       variances = as.list(setNames(vc$vcov, sub(":$", "", key))),
       converged = length(warned) == 0, warnings = I(unique(warned)))
}
tight_warned <- character(0)
tight <- withCallingHandlers(
  lmer(formula, data, REML = TRUE,
       control = lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10, maxfun = 1e5))),
  warning = function(w) {tight_warned <<- c(tight_warned, conditionMessage(w))
                         invokeRestart("muffleWarning")},
  message = function(m) invokeRestart("muffleMessage"))
out <- c(list(times = times, cpu = cpu, peak_mb = peak), summarise(fit, warned),
         list(reference = summarise(tight, tight_warned),
              version = paste("lme4", packageVersion("lme4"), "on", R.version.string)))
write_json(out, args[4], auto_unbox = TRUE, digits = NA)
