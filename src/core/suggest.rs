//! "Did you mean …?" for near misses: the closest allowed word by edit distance.

/// The candidate closest to `input`, if it is close enough to be a plausible typo.
///
/// Case differences are free (`Llama.cpp` → `llama.cpp`); a candidate that starts with the
/// input counts as one edit away (`llama` → `llama.cpp`); otherwise a candidate may be at most a
/// third of its length away (and at least one edit is always allowed), so `provder` finds
/// `provider` but `x` does not find `tts`.
pub fn closest<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = input.to_lowercase();
    candidates
        .into_iter()
        .map(|c| {
            let c_lower = c.to_lowercase();
            let mut d = edit_distance(&lower, &c_lower);
            if lower.chars().count() >= 3 && c_lower.starts_with(&lower) {
                d = d.min(1);
            }
            (d, c)
        })
        .filter(|(d, c)| *d <= (c.chars().count() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `" (did you mean \"x\"?)"`, or nothing when no candidate is close.
pub fn did_you_mean<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(input, candidates)
        .map(|c| format!(" (did you mean {c:?}?)"))
        .unwrap_or_default()
}

/// Optimal string alignment distance: insertions, deletions, substitutions and swaps of two
/// neighbouring characters each cost one (a swap is the most common typo).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rows: the one before the previous (for swaps), the previous, the current.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(before[j - 2] + 1);
            }
            cur[j] = d;
        }
        std::mem::swap(&mut before, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_count_edits() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("provder", "provider"), 1);
        assert_eq!(edit_distance("porvider", "provider"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn near_misses_are_suggested_and_far_ones_are_not() {
        let keys = ["provider", "model", "role", "port"];
        assert_eq!(closest("provder", keys), Some("provider"));
        assert_eq!(closest("modle", keys), Some("model"));
        assert_eq!(closest("Model", keys), Some("model"));
        assert_eq!(closest("colour", keys), None);
        assert_eq!(
            closest("llama", ["llama.cpp", "flm", "kokoro"]),
            Some("llama.cpp")
        );
        assert_eq!(did_you_mean("x", ["tts", "stt"]), "");
    }
}
