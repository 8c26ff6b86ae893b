# Shared helpers for the reference scripts in tests/reference/ (sourced, not run).
#
# - ref_paths(): this directory and data/reference/, found from the running script's
#   own location, so the scripts run from any working directory.
# - r_environment(): R version, platform, BLAS/LAPACK and package versions.
# - write_reference_json(): jsonlite with full precision (digits = NA, i.e. 15
#   significant digits), NA -> null, no timestamp (so a rerun on the same versions
#   gives a byte-identical file and `git diff` shows only real changes).
# - capture_fit(): evaluate a fit, collecting warnings and messages instead of
#   printing them, so they can be stored next to the numbers they concern.

suppressPackageStartupMessages(library(jsonlite))

ref_paths <- function() {
  args <- commandArgs(trailingOnly = FALSE)
  file_arg <- sub("^--file=", "", args[grep("^--file=", args)])
  here <- if (length(file_arg)) dirname(normalizePath(file_arg[1])) else normalizePath(getwd())
  list(here = here, data = normalizePath(file.path(here, "..", "..", "data", "reference")))
}

r_environment <- function(packages) {
  si <- sessionInfo()
  versions <- lapply(packages, function(p) utils::packageDescription(p)$Version)
  names(versions) <- packages
  list(
    R_version = R.version.string,
    platform = R.version$platform,
    running = si$running,
    BLAS = si$BLAS,
    LAPACK = si$LAPACK,
    packages = versions
  )
}

write_reference_json <- function(x, path) {
  jsonlite::write_json(x, path, auto_unbox = TRUE, digits = NA, pretty = TRUE,
                       na = "null", null = "null")
  cat("wrote", basename(path), file.size(path), "bytes\n")
}

capture_fit <- function(expr) {
  warnings <- character(0)
  messages <- character(0)
  value <- withCallingHandlers(
    expr,
    warning = function(w) {
      warnings <<- c(warnings, conditionMessage(w))
      invokeRestart("muffleWarning")
    },
    message = function(m) {
      messages <<- c(messages, trimws(conditionMessage(m)))
      invokeRestart("muffleMessage")
    }
  )
  list(value = value, warnings = warnings, messages = messages)
}

# A named numeric vector as a JSON object {name: value}.
named_numbers <- function(x) {
  out <- as.list(unname(as.numeric(x)))
  names(out) <- names(x)
  out
}

# A numeric matrix as {row: {col: value}}.
matrix_to_list <- function(m) {
  out <- lapply(rownames(m), function(r) named_numbers(setNames(m[r, ], colnames(m))))
  names(out) <- rownames(m)
  out
}

# An empty named list, written as {} (a bare list() would be written as []).
empty_object <- function() setNames(list(), character(0))
