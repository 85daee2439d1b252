use super::*;

fn scan(doc: &str) -> Result<[Option<String>; 2], JsonError> {
    let (text, [m, s]) = members(doc.as_bytes(), ["model", "stream"])?;
    let get = |r: Option<Range<usize>>| r.map(|r| text[r].to_string());
    Ok([get(m), get(s)])
}

fn found(doc: &str) -> [Option<String>; 2] {
    scan(doc).unwrap_or_else(|e| panic!("{doc:?} refused: {e}"))
}

#[test]
fn finds_top_level_members_and_nothing_nested() {
    assert_eq!(
        found(r#"{"model":"m","stream":true}"#),
        [Some(r#""m""#.into()), Some("true".into())]
    );
    assert_eq!(
        found(
            " {\n \"messages\" : [{\"model\":\"inner\",\"stream\":1}] ,\r\n\t\"model\" : null } \n"
        ),
        [Some("null".into()), None]
    );
    assert_eq!(
        found(r#"{"mod\u0065l":{"a":[1,2,{"b":[]}]},"\u0073tream":false}"#),
        [Some(r#"{"a":[1,2,{"b":[]}]}"#.into()), Some("false".into())]
    );
    assert_eq!(found("{}"), [None, None]);
    assert_eq!(
        found(r#"{"model ":1,"Model":2,"mode":3,"models":4}"#),
        [None, None]
    );
    assert_eq!(found(r#"{"mod\u00e9l":1,"mo\"del":2}"#), [None, None]);
}

#[test]
fn every_kind_of_value_is_checked_and_skipped() {
    let doc = r#"{"a":[true,false,null,0,-0,1.5,-2e10,3E+2,4.25e-3,"",
        "\"\\\/\b\f\n\r\t\u00e9\uD83D\uDE00","é😀",[],{},[[[]]],{"x":{"y":{}}}],"model":"ok"}"#;
    assert_eq!(found(doc), [Some(r#""ok""#.into()), None]);
}

#[test]
fn bad_documents_say_what_and_where() {
    let cases: &[(&str, &str)] = &[
        ("", "EOF while looking for the document at line 1 column 1"),
        ("{", "EOF while parsing an object at line 1 column 2"),
        (r#"{"a" 1}"#, "expected `:` at line 1 column 6"),
        (r#"{"a":}"#, "expected a value at line 1 column 6"),
        (
            r#"{"a":1,}"#,
            "expected a key (a string) at line 1 column 8",
        ),
        (r#"{"a":1 "b":2}"#, "expected `,` or `}` at line 1 column 8"),
        (
            "{\"a\":[1,\n2 3]}",
            "expected `,` or `]` at line 2 column 3",
        ),
        (r#"{"a":01}"#, "expected `,` or `}` at line 1 column 7"),
        (r#"{"a":1.}"#, "invalid number at line 1 column 8"),
        (r#"{"a":-}"#, "invalid number at line 1 column 7"),
        (r#"{"a":1e}"#, "invalid number at line 1 column 8"),
        (r#"{"a":tru}"#, "expected a value at line 1 column 6"),
        (r#"{"a":"\x"}"#, "invalid escape at line 1 column 8"),
        (r#"{"a":"\u12G4"}"#, "invalid \\u escape at line 1 column 8"),
        (
            "{\"a\":\"x\ty\"}",
            "control character in a string at line 1 column 8",
        ),
        (
            r#"{"a":"x"#,
            "EOF while parsing a string at line 1 column 8",
        ),
        (
            r#"{"a":[1,2"#,
            "EOF while parsing a list at line 1 column 10",
        ),
        (r#"{"a":1}x"#, "trailing characters at line 1 column 8"),
        (r#"{"a":1}{}"#, "trailing characters at line 1 column 8"),
        ("[]", "the document is not a JSON object"),
        (r#""model""#, "the document is not a JSON object"),
        (r#"{"model":1,"model":2}"#, "`model` appears more than once"),
        (
            r#"{"stream":1,"str\u0065am":2}"#,
            "`stream` appears more than once",
        ),
    ];
    for (doc, want) in cases {
        match scan(doc) {
            Ok(f) => panic!("{doc:?} accepted: {f:?}"),
            Err(e) => assert_eq!(e.to_string(), *want, "for {doc:?}"),
        }
    }
    let e = members(b"{\"a\":\"\xff\"}", ["model"]).unwrap_err();
    assert_eq!(e.to_string(), "invalid UTF-8 at line 1 column 7");
}

#[test]
fn nesting_is_bounded_without_growing() {
    let deep = |n: usize| format!("{{\"a\":{}{}}}", "[".repeat(n), "]".repeat(n));
    assert!(scan(&deep(MAX_DEPTH)).is_ok());
    assert!(matches!(
        scan(&deep(MAX_DEPTH + 1)),
        Err(JsonError::TooDeep { .. })
    ));
    let objects = format!("{{\"a\":{}1{}}}", "{\"b\":".repeat(300), "}".repeat(300));
    assert!(scan(&objects).is_ok());
}

/// A small deterministic generator: random documents, most of them then damaged.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, of: &[&'a str]) -> &'a str {
        of[self.below(of.len())]
    }
}

fn ws(r: &mut Rng, out: &mut String) {
    if r.below(4) == 0 {
        out.push_str(r.pick(&[" ", "\n", "\t", "\r\n", "  "]));
    }
}

fn value(r: &mut Rng, depth: usize, out: &mut String) {
    ws(r, out);
    match r.below(if depth > 5 { 4 } else { 6 }) {
        0 => out.push_str(r.pick(&["true", "false", "null"])),
        1 => out.push_str(r.pick(&[
            "0",
            "-0",
            "12",
            "-3.25",
            "1e5",
            "2E-3",
            "0.5e+7",
            "-1.0",
            "123456789012345678901",
        ])),
        2 | 3 => {
            out.push('"');
            for _ in 0..r.below(5) {
                out.push_str(r.pick(&[
                    "a",
                    "model",
                    "é",
                    "😀",
                    "\\n",
                    "\\\"",
                    "\\\\",
                    "\\/",
                    "\\u0041",
                    "\\u00e9",
                    "\\ud83d\\ude00",
                    " ",
                    "\\t",
                    "{",
                    "[",
                    ",",
                    ":",
                ]));
            }
            out.push('"');
        }
        4 => {
            out.push('[');
            let n = r.below(4);
            for k in 0..n {
                if k > 0 {
                    out.push(',');
                }
                value(r, depth + 1, out);
            }
            ws(r, out);
            out.push(']');
        }
        _ => object(r, depth + 1, out),
    }
    ws(r, out);
}

fn object(r: &mut Rng, depth: usize, out: &mut String) {
    out.push('{');
    let n = r.below(5);
    for k in 0..n {
        if k > 0 {
            out.push(',');
        }
        ws(r, out);
        out.push_str(r.pick(&[
            "\"model\"",
            "\"stream\"",
            "\"messages\"",
            "\"mod\\u0065l\"",
            "\"x\"",
            "\"\"",
        ]));
        ws(r, out);
        out.push(':');
        value(r, depth, out);
    }
    ws(r, out);
    out.push('}');
}

fn damage(r: &mut Rng, doc: &mut Vec<u8>) {
    const BYTES: &[u8] = b"{}[]\",:\\ -.0e1aEtfnu\x01\x7f\xc3\xa9\xff\n";
    for _ in 0..1 + r.below(2) {
        let at = r.below(doc.len() + 1);
        match r.below(4) {
            0 if at < doc.len() => {
                doc.remove(at);
            }
            1 if at < doc.len() => doc[at] = BYTES[r.below(BYTES.len())],
            2 => doc.insert(at, BYTES[r.below(BYTES.len())]),
            _ => doc.truncate(at),
        }
    }
}

/// serde_json (skipping the document as it skipped every body before this scanner) and the
/// UTF-8 check together are the oracle: a document is accepted exactly when serde_json takes
/// it, it is UTF-8, and it is an object; the members found are the ones serde_json reads.
#[test]
fn agrees_with_serde_json_on_generated_and_damaged_documents() {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..150_000 {
        let mut text = String::new();
        ws(&mut r, &mut text);
        if r.below(20) == 0 {
            value(&mut r, 0, &mut text);
        } else {
            object(&mut r, 0, &mut text);
        }
        ws(&mut r, &mut text);
        let mut doc = text.into_bytes();
        if r.below(3) != 0 {
            damage(&mut r, &mut doc);
        }
        let ours = members(&doc, ["model", "stream"]);
        let serde_ok = serde_json::from_slice::<serde::de::IgnoredAny>(&doc).is_ok()
            && std::str::from_utf8(&doc).is_ok();
        let is_object = doc
            .iter()
            .find(|c| !c.is_ascii_whitespace())
            .is_some_and(|&c| c == b'{');
        let shown = String::from_utf8_lossy(&doc);
        match ours {
            Err(JsonError::Duplicate(_)) => assert!(serde_ok && is_object, "{shown}"),
            Err(e) => {
                assert!(!(serde_ok && is_object), "refused {shown:?}: {e}");
                refused += 1;
            }
            Ok((text, spans)) => {
                assert!(serde_ok && is_object, "accepted {shown:?}");
                accepted += 1;
                // Where serde_json can decode everything (no lone surrogates), the values
                // found are the ones it reads.
                if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(&doc) {
                    for (name, span) in ["model", "stream"].iter().zip(spans) {
                        let ours = span
                            .map(|s| serde_json::from_str::<serde_json::Value>(&text[s]).unwrap());
                        assert_eq!(ours.as_ref(), map.get(*name), "{name} in {shown:?}");
                    }
                }
            }
        }
    }
    assert!(
        accepted > 40_000 && refused > 40_000,
        "{accepted} / {refused}"
    );
}
