# Disclosure control from R: every function here calls the workspace's own Python `disclosure_control` (the
# library the output checkers run) through reticulate, so R adds no rules of its own and cannot drift from them.
# Results come back as R data frames; the Python result stays inside (`$py`) so `save_output()` records the
# query exactly as the Python helper does, and the gateway can run it again on the extract.

.state <- new.env(parent = emptyenv())

.python <- function() {
  if (is.null(.state$sdc)) {
    .state$sdc <- reticulate::import("disclosure_control", convert = FALSE)
    .state$helper <- reticulate::import("outputs_helper", convert = FALSE)
    .state$bridge <- reticulate::import_from_path(
      "londonsde_r_bridge", system.file("python", package = "londonsde"), convert = FALSE
    )
  }
  .state
}

# One column name or several: Python takes a string or a list (a length-one R vector would become a string).
.names <- function(x) {
  if (is.null(x)) return(NULL)
  x <- as.character(x)
  if (length(x) == 1) x else as.list(x)
}

# A number given as an argument (edges, a range, a filter's bounds): R writes 30 as a double, where a Python
# researcher writes the integer 30; whole numbers go as integers so the record (and the labels, "[0, 30)") read the
# same whichever language made them.
.number <- function(x) {
  if (is.double(x) && length(x) > 0 && all(is.finite(x) & x == round(x) & abs(x) < .Machine$integer.max)) {
    as.integer(x)
  } else {
    x
  }
}

# Filters as the Python library takes them: list(region = "London", age = list(between = c(40, 60))).
# Vectors become lists, so a one-value `in` is still a list of one and never a string to iterate over.
.filters <- function(filters) {
  if (is.null(filters)) return(NULL)
  if (!is.list(filters) || is.null(names(filters)) || any(names(filters) == "")) {
    stop("filters: a named list, e.g. list(region = \"London\", age = list(between = c(40, 60)))")
  }
  lapply(filters, function(cond) {
    if (is.list(cond)) lapply(cond, function(x) as.list(.number(x)))
    else if (length(cond) == 1) .number(cond) else as.list(.number(cond))
  })
}

# A frame from the bridge's JSON (see londonsde_r_bridge.to_r): numbers from their bytes (NaN = NA), logicals
# and text from JSON lists (null = NA).
.from_python <- function(text) {
  parsed <- jsonlite::fromJSON(text, simplifyVector = FALSE)
  rows <- parsed$rows
  doubles <- function(payload) {
    x <- readBin(jsonlite::base64_dec(payload), "double", n = rows, size = 8L, endian = "little")
    x[is.nan(x)] <- NA
    x
  }
  listed <- function(payload) {
    x <- jsonlite::fromJSON(payload, simplifyVector = TRUE)
    if (length(x) == 0) logical(0) else x
  }
  columns <- Map(function(kind, payload) {
    switch(kind,
      double = doubles(payload),
      integer = readBin(jsonlite::base64_dec(payload), "integer", n = rows, size = 4L, endian = "little"),
      datetime = as.POSIXct(doubles(payload), origin = "1970-01-01", tz = "UTC"),
      logical = as.logical(listed(payload)),
      as.character(listed(payload))
    )
  }, unlist(parsed$kinds), unlist(parsed$payloads))
  names(columns) <- unlist(parsed$names)
  if (length(columns) == 0) return(data.frame()[seq_len(rows), , drop = FALSE])
  as.data.frame(columns, stringsAsFactors = FALSE, check.names = FALSE)
}

# An R data frame as pandas, column by column (see londonsde_r_bridge.from_r). Factors go as their labels, like
# the extract's text columns; whole numbers with a missing value go as doubles with NaN, as pandas holds them.
.pandas <- function(data) {
  if (inherits(data, "python.builtin.object")) return(data)
  if (!is.data.frame(data)) stop("data: a data frame (for example from load_extract(\"patients\"))")
  data <- as.data.frame(data)
  kinds <- character(0)
  payloads <- list()
  for (column in names(data)) {
    x <- data[[column]]
    if (is.factor(x) || inherits(x, "Date")) x <- as.character(x)
    if (inherits(x, "POSIXt")) {
      kind <- "datetime"
      payload <- writeBin(as.numeric(x), raw(), endian = "little")
    } else if (is.integer(x) && !anyNA(x)) {
      kind <- "integer"
      payload <- writeBin(x, raw(), size = 4L, endian = "little")
    } else if (is.numeric(x)) {
      kind <- "double"
      payload <- writeBin(as.numeric(x), raw(), endian = "little")
    } else if (is.logical(x)) {
      kind <- "logical"
      payload <- as.character(jsonlite::toJSON(x, na = "null"))
    } else if (is.character(x)) {
      kind <- "character"
      payload <- as.character(jsonlite::toJSON(x, na = "null"))
    } else {
      stop(sprintf("column %s: a %s column cannot be passed to Python", column, class(x)[1]))
    }
    kinds <- c(kinds, kind)
    payloads[[length(payloads) + 1L]] <- payload
  }
  .python()$bridge$from_r(as.list(names(data)), as.list(kinds), payloads, nrow(data))
}

.dataset <- function(data) attr(data, "sdc_dataset", exact = TRUE)

.wrap <- function(result) {
  table <- .from_python(reticulate::py_to_r(.python()$bridge$flat_table(result)))
  structure(
    list(
      kind = reticulate::py_to_r(result$kind),
      status = reticulate::py_str(result$status),
      summary = reticulate::py_to_r(result$summary),
      table = table,
      suppressed = function() .wrap(result$suppressed()),
      rounded = function(base = NULL) .wrap(result$rounded(if (is.null(base)) NULL else as.integer(base))),
      record = function() reticulate::py_to_r(result$record()$to_dict()),
      model = result$model,
      py = result
    ),
    class = "sdc_output"
  )
}

format.sdc_output <- function(x, ...) {
  c(sprintf("<sdc_output %s: %s>", x$kind, x$status), utils::capture.output(print(x$table)), x$summary)
}

print.sdc_output <- function(x, ...) {
  writeLines(format(x))
  invisible(x)
}

# A table of an extract (as its manifest names it) as an R data frame; the checked functions remember its name.
load_extract <- function(dataset, data_dir = "/data") {
  frame <- .from_python(reticulate::py_to_r(.python()$bridge$load_extract(dataset, data_dir)))
  attr(frame, "sdc_dataset") <- dataset
  frame
}

# Counts (or `values` summarised by `aggfunc`) of `index` by `columns`, as `disclosure_control.crosstab`.
sdc_crosstab <- function(data, index, columns, values = NULL, aggfunc = NULL, margins = FALSE,
                         margins_name = "All", normalize = FALSE, dataset = .dataset(data), filters = NULL) {
  .wrap(.python()$sdc$crosstab(
    .names(index), .names(columns), values, aggfunc,
    data = .pandas(data), margins = margins, margins_name = margins_name, normalize = normalize,
    dataset = dataset, filters = .filters(filters)
  ))
}

# `values` summarised by `aggfunc` (one name or several) per `index` (and `columns`), as `pivot_table`.
sdc_pivot_table <- function(data, values, index, columns = NULL, aggfunc = "mean", margins = FALSE,
                            margins_name = "All", dataset = .dataset(data), filters = NULL) {
  .wrap(.python()$sdc$pivot_table(
    .pandas(data), values, .names(index), .names(columns), .names(aggfunc),
    margins = margins, margins_name = margins_name, dataset = dataset, filters = .filters(filters)
  ))
}

# Summary statistics of numeric columns, each checked as a cell, as `disclosure_control.describe`.
sdc_describe <- function(data, columns = NULL, extremes = TRUE, dataset = .dataset(data), filters = NULL) {
  .wrap(.python()$sdc$describe(
    .pandas(data), if (is.null(columns)) NULL else as.list(as.character(columns)),
    extremes = extremes, dataset = dataset, filters = .filters(filters)
  ))
}

# Histogram counts: `bins` a number of bins or the edges, as `disclosure_control.hist`.
sdc_hist <- function(data, column, bins = 10L, range = NULL, dataset = .dataset(data), filters = NULL) {
  bins <- if (length(bins) == 1) as.integer(bins) else as.list(.number(bins))
  range <- if (is.null(range)) NULL else reticulate::tuple(as.list(.number(range)))
  .wrap(.python()$sdc$hist(
    .pandas(data), column, bins, range, dataset = dataset, filters = .filters(filters)
  ))
}

# A regression (`model`: "ols", "logit" or "probit") in the formula language of the Python library
# (statsmodels: `C(region)` for a categorical term), given as a formula or a string.
sdc_glm <- function(formula, data, model = c("ols", "logit", "probit"), dataset = .dataset(data),
                    filters = NULL) {
  model <- match.arg(model)
  if (inherits(formula, "formula")) formula <- paste(deparse(formula, width.cutoff = 500L), collapse = " ")
  fit <- .python()$sdc[[model]]
  .wrap(fit(formula, .pandas(data), dataset = dataset, filters = .filters(filters)))
}

# Kaplan-Meier table of `time` with `event` (1 = event, 0 = censored), per `group`, checked per step.
sdc_survival <- function(data, time, event, group = NULL, dataset = .dataset(data), filters = NULL) {
  .wrap(.python()$sdc$survival(
    .pandas(data), time, event, group = .names(group), dataset = dataset, filters = .filters(filters)
  ))
}

# Write `<name>.csv` and its check record `<name>.sdc.json` to outputs/ with the Python helper; the CSV's path.
save_output <- function(output, name, outputs_dir = NULL, allow_fail = FALSE) {
  if (!inherits(output, "sdc_output")) stop("output: what an sdc_ function returned")
  path <- .python()$helper$save_output(output$py, name, outputs_dir = outputs_dir, allow_fail = allow_fail,
                                       source = .cell_source())
  reticulate::py_str(path)
}

# The code of the notebook cell running now, as the kernel (IRkernel) received it; NULL outside a kernel (Rscript).
# Saved with the output, so the output checkers see the code that made the table beside it, as for Python. Only
# the cell's text, never its output.
.cell_source <- function() {
  for (frame in rev(sys.frames())) {
    self <- get0(".self", envir = frame, inherits = TRUE)
    if (inherits(self, "Executor")) {
      code <- tryCatch(self$current_request$content$code, error = function(e) NULL)
      if (is.character(code) && length(code) == 1) return(code)
    }
  }
  NULL
}

# The outputs saved so far, with their status.
list_outputs <- function(outputs_dir = NULL) {
  reticulate::py_to_r(.python()$helper$list_outputs(outputs_dir = outputs_dir))
}

# Your draft output requests on this project (printed, and returned as a list).
list_requests <- function() {
  said <- reticulate::py_capture_output(found <- .python()$helper$list_requests())
  cat(said)
  invisible(reticulate::py_to_r(found))
}

# Send outputs/<name> (with its record) to output request `request`, into `group` (its name or id).
submit_output <- function(name, request, group = NULL, kind = NULL) {
  if (is.numeric(group)) group <- as.integer(group)
  # The helper prints where the file went; captured and written here, so the R console shows it too.
  said <- reticulate::py_capture_output(result <- .python()$helper$submit_output(name, as.integer(request), group, kind))
  cat(said)
  invisible(reticulate::py_to_r(result))
}
