# Time lavaan::sem on one benchmark dataset; called by bench_sem.py.
#
#   Rscript bench_sem_lavaan.R <data.csv> <model.lav> <missing> <out.json> [<repeats>]
#
# Fits the model in <model.lav> (lavaan syntax) to <data.csv> with
# sem(model, data, missing = <missing>, meanstructure = TRUE, estimator = "ML"), lavaan's
# defaults otherwise (observed information under FIML, h1 by EM, the baseline model and
# the standard test, all inside the sem() call). Only the sem() call is timed (elapsed
# seconds of system.time: no R start-up, no CSV reading), after one untimed warm-up fit.
#
# With <repeats>, the fits are timed one after the other. Without it the fits are driven
# from standard input, so that bench_sem.py can alternate them with its own: after the
# warm-up the script prints "ready"; each line "fit" times one fit and prints its seconds;
# "end" (or the end of input) stops. Either way <out.json> receives the times, the
# estimates and standard errors of the free parameters (lhs, op, rhs), the log-likelihood,
# the iterations, whether lavaan converged and the lavaan and R versions.
suppressPackageStartupMessages({library(lavaan); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
data <- read.csv(args[1])
model <- paste(readLines(args[2]), collapse = "\n")  # lavaan wants one string, not lines
missing <- args[3]
fit_once <- function() {
  sem(model, data = data, missing = missing, meanstructure = TRUE, estimator = "ML")
}
fit <- fit_once()
times <- numeric(0)
if (length(args) >= 5) {
  for (i in seq_len(as.integer(args[5]))) {
    times <- c(times, system.time(fit <- fit_once())[["elapsed"]])
  }
} else {
  input <- file("stdin")
  open(input)
  cat("ready\n")
  flush(stdout())
  repeat {
    line <- readLines(input, n = 1)
    if (length(line) == 0 || trimws(line) != "fit") break
    seconds <- system.time(fit <- fit_once())[["elapsed"]]
    times <- c(times, seconds)
    cat(sprintf("%.6f\n", seconds))
    flush(stdout())
  }
  close(input)
}
table <- parTable(fit)
free <- table$free > 0
out <- list(times = times, loglik = as.numeric(logLik(fit)),
            iterations = lavInspect(fit, "iterations"),
            converged = lavInspect(fit, "converged"),
            parameters = data.frame(lhs = table$lhs[free], op = table$op[free],
                                    rhs = table$rhs[free], est = table$est[free],
                                    se = table$se[free]),
            version = paste("lavaan", packageVersion("lavaan"), "on", R.version.string))
write_json(out, args[4], auto_unbox = TRUE, digits = NA)
