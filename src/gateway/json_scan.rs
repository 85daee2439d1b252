//! One pass over a JSON document that checks all of it (RFC 8259, UTF-8) and finds where a few
//! top-level members' values are, without building anything or allocating: the gateway reads
//! `model` and `stream` from every request body this way. Nesting is tracked in a fixed bit
//! stack, so a document nested deeper than [`MAX_DEPTH`] is refused rather than grown into.

use std::ops::Range;

/// How deep arrays and objects may nest inside the top-level object.
pub const MAX_DEPTH: usize = 512;

/// Why a document was refused; positions are 1-based, counted in bytes on their line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("{what} at line {line} column {column}")]
    Syntax {
        what: &'static str,
        line: usize,
        column: usize,
    },
    #[error("invalid UTF-8 at line {line} column {column}")]
    Utf8 { line: usize, column: usize },
    #[error("nested deeper than {MAX_DEPTH} levels at line {line} column {column}")]
    TooDeep { line: usize, column: usize },
    #[error("the document is not a JSON object")]
    NotAnObject,
    #[error("`{0}` appears more than once")]
    Duplicate(&'static str),
}

/// Where each wanted member's value is, by byte range.
pub type Spans<const N: usize> = [Option<Range<usize>>; N];

/// The document as text, and where the value of each of `names` is in it (`None` when the
/// top-level object has no such member). Keys are compared after their escapes are decoded, so
/// `"mod\u0065l"` is `model`; a name given twice is [`JsonError::Duplicate`].
pub fn members<'a, const N: usize>(
    doc: &'a [u8],
    names: [&'static str; N],
) -> Result<(&'a str, Spans<N>), JsonError> {
    let text = std::str::from_utf8(doc).map_err(|e| {
        let (line, column) = position(doc, e.valid_up_to());
        JsonError::Utf8 { line, column }
    })?;
    let mut s = Scanner { b: doc, i: 0 };
    let found = s.object(names).map_err(|e| match e {
        Stop::Syntax(what) => {
            let (line, column) = position(doc, s.i);
            JsonError::Syntax { what, line, column }
        }
        Stop::TooDeep => {
            let (line, column) = position(doc, s.i);
            JsonError::TooDeep { line, column }
        }
        Stop::NotAnObject => JsonError::NotAnObject,
        Stop::Duplicate(name) => JsonError::Duplicate(name),
    })?;
    Ok((text, found))
}

/// Line and column (1-based) of byte `at`.
fn position(doc: &[u8], at: usize) -> (usize, usize) {
    let before = doc.get(..at).unwrap_or(doc);
    let line = 1 + before.iter().filter(|&&c| c == b'\n').count();
    let column = 1 + before.len()
        - before
            .iter()
            .rposition(|&c| c == b'\n')
            .map_or(0, |p| p + 1);
    (line, column)
}

enum Stop {
    Syntax(&'static str),
    TooDeep,
    NotAnObject,
    Duplicate(&'static str),
}

/// Open arrays and objects, one bit each (set: object).
struct Nesting {
    bits: [u64; MAX_DEPTH / 64],
    len: usize,
}

impl Nesting {
    fn push(&mut self, object: bool) -> Result<(), Stop> {
        let (word, bit) = (self.len / 64, self.len % 64);
        let w = self.bits.get_mut(word).ok_or(Stop::TooDeep)?;
        *w = (*w & !(1 << bit)) | (u64::from(object) << bit);
        self.len += 1;
        Ok(())
    }

    fn room(&self) -> Result<(), Stop> {
        if self.len < MAX_DEPTH {
            Ok(())
        } else {
            Err(Stop::TooDeep)
        }
    }

    /// Whether the innermost open one is an object; `None` when none is open.
    fn top(&self) -> Option<bool> {
        let at = self.len.checked_sub(1)?;
        Some(self.bits[at / 64] >> (at % 64) & 1 == 1)
    }
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn expect(&mut self, c: u8, what: &'static str) -> Result<(), Stop> {
        self.ws();
        if self.peek() != Some(c) {
            return Err(Stop::Syntax(what));
        }
        self.i += 1;
        Ok(())
    }

    /// The top-level object, noting where the values of `names` are.
    fn object<const N: usize>(&mut self, names: [&'static str; N]) -> Result<Spans<N>, Stop> {
        let mut found = [const { None }; N];
        let mut twice = None;
        self.ws();
        if self.peek() != Some(b'{') {
            return Err(if self.peek().is_none() {
                Stop::Syntax("EOF while looking for the document")
            } else {
                Stop::NotAnObject
            });
        }
        self.i += 1;
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
        } else {
            loop {
                self.ws();
                let key = self.key()?;
                self.expect(b':', "expected `:`")?;
                self.ws();
                let start = self.i;
                self.value()?;
                for (name, slot) in names.iter().zip(found.iter_mut()) {
                    if key_is(key, name) {
                        if slot.is_some() {
                            // Said once the whole document is known to be JSON.
                            twice = twice.or(Some(*name));
                        }
                        *slot = Some(start..self.i);
                    }
                }
                self.ws();
                match self.peek() {
                    Some(b',') => self.i += 1,
                    Some(b'}') => {
                        self.i += 1;
                        break;
                    }
                    Some(_) => return Err(Stop::Syntax("expected `,` or `}`")),
                    None => return Err(Stop::Syntax("EOF while parsing an object")),
                }
            }
        }
        self.ws();
        if self.i != self.b.len() {
            return Err(Stop::Syntax("trailing characters"));
        }
        match twice {
            Some(name) => Err(Stop::Duplicate(name)),
            None => Ok(found),
        }
    }

    /// A key (a string) at `i`; returns what is between its quotes.
    fn key(&mut self) -> Result<&'a [u8], Stop> {
        if self.peek() != Some(b'"') {
            return Err(Stop::Syntax(if self.peek().is_none() {
                "EOF while parsing an object"
            } else {
                "expected a key (a string)"
            }));
        }
        let start = self.i + 1;
        self.string()?;
        let b: &'a [u8] = self.b;
        Ok(&b[start..self.i - 1])
    }

    /// One value at `i`, nested ones included, checked and skipped.
    fn value(&mut self) -> Result<(), Stop> {
        let mut open = Nesting {
            bits: [0; MAX_DEPTH / 64],
            len: 0,
        };
        loop {
            // A value is expected here.
            self.ws();
            match self.peek() {
                Some(c @ (b'{' | b'[')) => {
                    let object = c == b'{';
                    self.i += 1;
                    self.ws();
                    if self.peek() == Some(if object { b'}' } else { b']' }) {
                        // Empty, but as deep as any other.
                        open.room()?;
                        self.i += 1;
                    } else {
                        open.push(object)?;
                        if object {
                            self.member_key()?;
                        }
                        continue;
                    }
                }
                Some(b'"') => self.string()?,
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(b'-' | b'0'..=b'9') => self.number()?,
                Some(_) => return Err(Stop::Syntax("expected a value")),
                None => return Err(Stop::Syntax("EOF while parsing a value")),
            }
            // A value ended: close what it ends, or go on to the next element or member.
            loop {
                let Some(object) = open.top() else {
                    return Ok(());
                };
                self.ws();
                match (self.peek(), object) {
                    (Some(b','), true) => {
                        self.i += 1;
                        self.ws();
                        self.member_key()?;
                        break;
                    }
                    (Some(b','), false) => {
                        self.i += 1;
                        break;
                    }
                    (Some(b'}'), true) | (Some(b']'), false) => {
                        self.i += 1;
                        open.len -= 1;
                    }
                    (Some(_), true) => return Err(Stop::Syntax("expected `,` or `}`")),
                    (Some(_), false) => return Err(Stop::Syntax("expected `,` or `]`")),
                    (None, true) => return Err(Stop::Syntax("EOF while parsing an object")),
                    (None, false) => return Err(Stop::Syntax("EOF while parsing a list")),
                }
            }
        }
    }

    /// A nested object's key and its colon.
    fn member_key(&mut self) -> Result<(), Stop> {
        self.key()?;
        self.expect(b':', "expected `:`")
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), Stop> {
        if !self.b[self.i..].starts_with(word) {
            return Err(Stop::Syntax(if self.b.len() - self.i < word.len() {
                "EOF while parsing a value"
            } else {
                "expected a value"
            }));
        }
        self.i += word.len();
        Ok(())
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i - start
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Result<(), Stop> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(Stop::Syntax("invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(Stop::Syntax("invalid number"));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(Stop::Syntax("invalid number"));
            }
        }
        Ok(())
    }

    /// A string at `i` (its opening quote), up to and including its closing quote.
    fn string(&mut self) -> Result<(), Stop> {
        self.i += 1;
        loop {
            let rest = &self.b[self.i..];
            let Some(at) = memchr::memchr2(b'"', b'\\', rest) else {
                self.i += rest.iter().position(|&c| c < 0x20).unwrap_or(rest.len());
                return Err(Stop::Syntax(if self.i == self.b.len() {
                    "EOF while parsing a string"
                } else {
                    "control character in a string"
                }));
            };
            if let Some(c) = rest[..at].iter().position(|&c| c < 0x20) {
                self.i += c;
                return Err(Stop::Syntax("control character in a string"));
            }
            self.i += at + 1;
            if rest[at] == b'"' {
                return Ok(());
            }
            match self.peek() {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 1,
                Some(b'u') => {
                    let hex = self.b.get(self.i + 1..self.i + 5);
                    if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                        return Err(Stop::Syntax("invalid \\u escape"));
                    }
                    self.i += 5;
                }
                Some(_) => return Err(Stop::Syntax("invalid escape")),
                None => return Err(Stop::Syntax("EOF while parsing a string")),
            }
        }
    }
}

/// Whether the key whose text between the quotes is `raw` (checked: a valid string) is `name`
/// (ASCII) once its escapes are decoded.
fn key_is(raw: &[u8], name: &str) -> bool {
    if !raw.contains(&b'\\') {
        return raw == name.as_bytes();
    }
    let mut want = name.bytes();
    let mut i = 0;
    while let Some(&c) = raw.get(i) {
        let decoded = if c != b'\\' {
            i += 1;
            c
        } else {
            let e = raw.get(i + 1).copied().unwrap_or(0);
            i += 2;
            match e {
                b'u' => {
                    let hex = raw.get(i..i + 4).unwrap_or_default();
                    i += 4;
                    match std::str::from_utf8(hex)
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .filter(u8::is_ascii)
                    {
                        Some(b) => b,
                        None => return false,
                    }
                }
                b'b' => 0x08,
                b'f' => 0x0c,
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                other => other,
            }
        };
        if want.next() != Some(decoded) {
            return false;
        }
    }
    want.next().is_none()
}

#[cfg(test)]
#[path = "json_scan_tests.rs"]
mod tests;
