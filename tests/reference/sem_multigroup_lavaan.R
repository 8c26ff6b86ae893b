# Reference values for multigroup MLR with missing values (FIML), lavaan 0.6.
# Run from the repository root:  Rscript tests/reference/sem_multigroup_lavaan.R
# Writes tests/reference/sem_multigroup_lavaan.json: for each invariance level of the
# three-factor CFA of HolzingerSwineford1939 (with missing values, sem2_hs_missing.csv) by
# school, fitMeasures() and the parameter estimates. The complete-data multigroup fits (ML and
# MLR, configural .. strict) and the RI-CLPM with a covariate and with two groups are in
# sem2_lavaan.json (sem2_lavaan.R).
library(lavaan)
library(jsonlite)
options(useFancyQuotes = FALSE)
d <- read.csv("tests/reference/sem2_hs_missing.csv")
model <- "
visual  =~ x1 + x2 + x3
textual =~ x4 + x5 + x6
speed   =~ x7 + x8 + x9
"
levels <- list(configural = character(0), metric = "loadings",
               scalar = c("loadings", "intercepts"))
measures <- c("npar", "chisq", "df", "chisq.scaled", "chisq.scaling.factor", "cfi", "tli",
              "rmsea", "cfi.scaled", "rmsea.scaled", "cfi.robust", "tli.robust",
              "rmsea.robust", "srmr", "logl", "bic")
out <- list(generated_by = "tests/reference/sem_multigroup_lavaan.R",
            lavaan = as.character(packageVersion("lavaan")), cases = list())
for (level in names(levels)) {
  fit <- if (length(levels[[level]])) {
    cfa(model, data = d, group = "school", estimator = "MLR", missing = "fiml",
        group.equal = levels[[level]])
  } else {
    cfa(model, data = d, group = "school", estimator = "MLR", missing = "fiml")
  }
  pe <- parameterEstimates(fit)
  out$cases[[level]] <- list(
    call = paste0("cfa(model, data, group = 'school', estimator = 'MLR', missing = 'fiml'",
                  if (length(levels[[level]])) paste0(", group.equal = c('",
                    paste(levels[[level]], collapse = "', '"), "')") else "", ")"),
    group_label = lavInspect(fit, "group.label"),
    fit_measures = as.list(fitMeasures(fit, measures)),
    parameters = pe[pe$op %in% c("=~", "~~", "~1"), c("lhs", "op", "rhs", "group", "est", "se")])
}
write(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE),
      "tests/reference/sem_multigroup_lavaan.json")
