//! A tiny renderer for the subset of Helm templating the hal0 chart uses: `{{ .Values.a.b }}`,
//! `{{ .Release.Namespace }}`, `{{- if .Values.a.b }}` … `{{- end }}` on their own lines, and
//! `{{- toYaml .Values.a | nindent N }}` on its own line. Anything else fails the test, so the
//! chart stays renderable (and checkable) without helm.

use serde_yaml::Value;

fn lookup<'a>(values: &'a Value, path: &str) -> &'a Value {
    let mut cur = values;
    for part in path.trim_start_matches(".Values.").split('.') {
        cur = &cur[part];
    }
    cur
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::String(s) => !s.is_empty(),
        Value::Sequence(s) => !s.is_empty(),
        Value::Mapping(m) => !m.is_empty(),
        Value::Number(_) | Value::Tagged(_) => true,
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => panic!("{other:?} is not a scalar"),
    }
}

fn expr(e: &str, values: &Value, namespace: &str) -> String {
    match e.trim() {
        ".Release.Namespace" => namespace.to_string(),
        p if p.starts_with(".Values.") => scalar(lookup(values, p)),
        other => panic!("unsupported template expression {other:?}"),
    }
}

/// Renders one template file.
pub fn render(template: &str, values: &Value, namespace: &str) -> String {
    let mut out = String::new();
    let mut conditions: Vec<bool> = Vec::new();
    for line in template.lines() {
        let t = line.trim();
        if let Some(c) = t.strip_prefix("{{- if ").and_then(|r| r.strip_suffix("}}")) {
            conditions.push(truthy(lookup(values, c.trim())));
            continue;
        }
        if t == "{{- end }}" {
            conditions.pop().expect("an end without an if");
            continue;
        }
        if !conditions.iter().all(|c| *c) {
            continue;
        }
        if let Some(rest) = t
            .strip_prefix("{{- toYaml ")
            .and_then(|r| r.strip_suffix("}}"))
        {
            let (path, indent) = rest.split_once("| nindent").expect("toYaml … | nindent N");
            let n: usize = indent.trim().parse().expect("an indent");
            let yaml = serde_yaml::to_string(lookup(values, path.trim())).expect("yaml");
            for l in yaml.lines() {
                out.push_str(&" ".repeat(n));
                out.push_str(l);
                out.push('\n');
            }
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find("}}").expect("unclosed {{") + start;
            out.push_str(&expr(&rest[start + 2..end], values, namespace));
            rest = &rest[end + 2..];
        }
        out.push_str(rest);
        out.push('\n');
    }
    assert!(conditions.is_empty(), "an if without an end");
    out
}
