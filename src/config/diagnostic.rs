//! What a config problem looks like: one `Diagnostic` per problem, each at a line and column,
//! and `ConfigErrors`, the whole list a failed parse returns.

use std::fmt;
use std::ops::Range;
use std::path::Path;

use serde::Serialize;

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The file, as it was named to hal0 (messages only; the text was parsed from memory).
    pub path: String,
    /// 1-based line of the offending key or value; `None` when the problem has no position
    /// (the file could not be read at all).
    pub line: Option<usize>,
    /// 1-based column, counted in characters.
    pub col: Option<usize>,
    /// The dotted TOML path of the field at fault (`slots.primary.provider`), empty for TOML
    /// syntax errors, which belong to no field.
    pub field: String,
    /// What is wrong, what is allowed, and a "did you mean" when one is close.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.path)?;
        if let (Some(line), Some(col)) = (self.line, self.col) {
            write!(f, "{line}:{col}:")?;
        }
        if self.field.is_empty() {
            write!(f, " {}", self.message)
        } else {
            write!(f, " {}: {}", self.field, self.message)
        }
    }
}

/// Every problem found in a config file, in file order. Displayed as one
/// `PATH:LINE:COL: message` line per problem; serialised as a JSON array of diagnostics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(transparent)]
pub struct ConfigErrors(pub Vec<Diagnostic>);

impl ConfigErrors {
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }

    /// The file could not be read: one diagnostic without a position.
    pub fn unreadable(path: &Path, err: &std::io::Error) -> Self {
        ConfigErrors(vec![Diagnostic {
            path: path.display().to_string(),
            line: None,
            col: None,
            field: String::new(),
            message: format!("cannot read the config file: {err}"),
        }])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl IntoIterator for ConfigErrors {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// Collects diagnostics while a document is read, turning byte spans into lines and columns.
pub(crate) struct Sink<'t> {
    path: String,
    text: &'t str,
    /// Byte offset where each line starts.
    line_starts: Vec<usize>,
    /// (byte offset, diagnostic), sorted into file order by `finish`.
    found: Vec<(usize, Diagnostic)>,
}

impl<'t> Sink<'t> {
    pub fn new(path: &Path, text: &'t str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Sink {
            path: path.display().to_string(),
            text,
            line_starts,
            found: Vec::new(),
        }
    }

    /// 1-based line and character column of a byte offset.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset);
        let start = self
            .line_starts
            .get(line.saturating_sub(1))
            .copied()
            .unwrap_or(0);
        let col = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line.max(1), col + 1)
    }

    /// The source text of a span (empty when the span is out of bounds).
    pub fn text(&self, span: Range<usize>) -> &'t str {
        self.text.get(span).unwrap_or_default()
    }

    pub fn error(
        &mut self,
        span: Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        let (line, col) = self.position(span.start);
        self.found.push((
            span.start,
            Diagnostic {
                path: self.path.clone(),
                line: Some(line),
                col: Some(col),
                field: field.into(),
                message: message.into(),
            },
        ));
    }

    /// `Err` with everything found, if anything was.
    pub fn finish(self) -> Result<(), ConfigErrors> {
        if self.found.is_empty() {
            Ok(())
        } else {
            Err(self.into_errors())
        }
    }

    /// Everything found, in file order (problems at the same place keep the order found).
    pub fn into_errors(mut self) -> ConfigErrors {
        self.found.sort_by_key(|(offset, _)| *offset);
        self.found.dedup_by(|a, b| a.1 == b.1);
        ConfigErrors(self.found.into_iter().map(|(_, d)| d).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let sink = Sink::new(Path::new("x.toml"), "a = 1\né = \"x\"\n");
        assert_eq!(sink.position(0), (1, 1));
        assert_eq!(sink.position(4), (1, 5));
        assert_eq!(sink.position(6), (2, 1));
        // `=` after the two-byte `é` and a space is the third character.
        assert_eq!(sink.position(9), (2, 3));
        assert_eq!(sink.position(1000), (3, 1));
    }

    #[test]
    fn display_is_one_line_per_problem() {
        let mut sink = Sink::new(Path::new("h.toml"), "a = 1\nb = 2\n");
        sink.error(6..7, "b", "second");
        sink.error(0..1, "a", "first");
        let errs = sink.finish().unwrap_err();
        assert_eq!(
            errs.to_string(),
            "h.toml:1:1: a: first\nh.toml:2:1: b: second"
        );
    }
}
