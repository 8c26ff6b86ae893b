# Reference for the estimator's restart from a stall short of a stationary point.
# Run from the repository root:  Rscript tests/reference/sem_local_optimum.R
# Data: sem_local_optimum.csv, the Bond items (wai_3, wai_5, wai_7, wai_9) of the bundled demo
# at sessions 1-3, one row per client (wide), as the workbench's wide_panel builds them; 400
# clients, missing sessions left missing. Models: semTools measEq.syntax conventions as
# alliance_analysis.sem.invariance.longitudinal_syntax writes them (configural and metric),
# fitted by FIML. Before the fix our configural fit stopped at logL -4506.76 and said
# "converged"; lavaan's optimum is below, and the metric model's is lower than it.
library(lavaan)
library(jsonlite)
d <- read.csv("tests/reference/sem_local_optimum.csv")
syntax <- list(configural = readLines("tests/reference/sem_local_optimum_configural.txt"),
               metric = readLines("tests/reference/sem_local_optimum_metric.txt"))
out <- list(generated_by = "tests/reference/sem_local_optimum.R",
            lavaan = as.character(packageVersion("lavaan")), cases = list())
for (level in names(syntax)) {
  fit <- lavaan(paste(syntax[[level]], collapse = "\n"), data = d, missing = "fiml",
                meanstructure = TRUE)
  pe <- parameterEstimates(fit)
  out$cases[[level]] <- list(
    fit_measures = as.list(fitMeasures(fit, c("npar", "chisq", "df", "logl", "cfi",
                                               "rmsea"))),
    parameters = pe[pe$op %in% c("=~", "~~", "~1"), c("lhs", "op", "rhs", "est", "se")])
}
write(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE),
      "tests/reference/sem_local_optimum.json")
