//! Text preparation shared by training and suggestion: ATT&CK markup removal,
//! tokenization and the unigram + bigram features the model is built on.
//!
//! Training text (ATT&CK descriptions, procedure examples) and input text (alert
//! titles, command lines, pasted reports) go through the same steps, so a
//! procedure example pasted as input is read exactly as it was learned.

use std::sync::LazyLock;

use regex::Regex;

/// Inputs longer than this many bytes (all fields together) are truncated
/// before tokenization: the suggester's work per input is bounded whatever a
/// client sends. Alerts and analyst notes are far below it; a pasted report
/// keeps its first 32 KiB.
pub const MAX_INPUT_BYTES: usize = 32 * 1024;

/// At most this many tokens of one input are used (a second bound, for text
/// that is dense in short tokens).
pub const MAX_INPUT_TOKENS: usize = 4_096;

/// `(Citation: Vendor Report 2021)`: a reference label, noise for prediction.
static CITATION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\(Citation:[^)]*\)").expect("static regex"));

/// A markdown link to an ATT&CK group, software or campaign page. The actor's
/// name is masked: one actor uses each technique once, so its name points at
/// the techniques it does *not* share with the example being learned.
static ACTOR_LINK: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\[[^\]]*\]\(https?://attack\.mitre\.org/(?:software|groups|campaigns)/[^)]*\)")
        .expect("static regex")
});

/// Any other markdown link: keep its text, drop the URL.
static LINK: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\[([^\]]*)\]\([^)]*\)").expect("static regex"));

/// HTML tags such as `<code>` that ATT&CK text embeds.
static TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"</?[A-Za-z][^>]{0,40}>").expect("static regex"));

/// Removes ATT&CK markup: citations, actor links (masked), other links (text
/// kept) and HTML tags.
pub fn clean(text: &str) -> String {
    let text = CITATION.replace_all(text, " ");
    let text = ACTOR_LINK.replace_all(&text, " ");
    let text = LINK.replace_all(&text, "$1");
    TAG.replace_all(&text, " ").into_owned()
}

/// The longest prefix of `text` of at most `max` bytes that ends on a
/// character boundary.
pub fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Lower-cased word tokens: maximal runs of alphanumeric characters or `_`,
/// at least two characters long (one-letter tokens carry no technique signal).
///
/// Paths, command lines and registry keys split at their separators, so
/// `C:\Windows\System32\schtasks.exe /create` yields `windows`, `system32`,
/// `schtasks`, `exe`, `create`.
pub fn tokens(text: &str, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    for word in text.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
        if out.len() >= limit {
            break;
        }
        if word.chars().nth(1).is_some() {
            out.push(word.to_lowercase());
        }
    }
    out
}

/// Unigram and bigram feature strings of one token sequence, in order.
/// A bigram is the two tokens joined by one space (`scheduled task`).
pub fn features(tokens: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(tokens.len() * 2);
    out.extend(tokens.iter().cloned());
    out.extend(tokens.windows(2).map(|w| format!("{} {}", w[0], w[1])));
    out
}

/// A short excerpt of `text` around the first case-insensitive occurrence of
/// `needle` (or of its first word when a bigram is split by punctuation in
/// the source), at most about `width` bytes on each side.
pub fn excerpt(text: &str, needle: &str, width: usize) -> Option<String> {
    let first_word = needle.split(' ').next().unwrap_or(needle);
    let at = find_ignore_ascii_case(text, needle)
        .or_else(|| find_ignore_ascii_case(text, first_word))?;
    let mut start = at.saturating_sub(width);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (at + needle.len() + width).min(text.len());
    while !text.is_char_boundary(end) {
        end += 1;
    }
    let mut out = String::new();
    if start > 0 {
        out.push('…');
    }
    out.push_str(text[start..end].trim());
    if end < text.len() {
        out.push('…');
    }
    Some(collapse_whitespace(&out))
}

/// Byte offset of the first occurrence of `needle` in `text`, ignoring ASCII
/// case. A match always starts on a character boundary: a UTF-8 sequence can
/// only match from its first byte.
fn find_ignore_ascii_case(text: &str, needle: &str) -> Option<usize> {
    let (hay, needle) = (text.as_bytes(), needle.as_bytes());
    let (&first, rest) = needle.split_first()?;
    if needle.len() > hay.len() {
        return None;
    }
    // Compare the first byte cheaply, the rest only at candidate positions:
    // evidence runs this for every suggestion.
    let (lower, upper) = (first.to_ascii_lowercase(), first.to_ascii_uppercase());
    (0..=hay.len() - needle.len()).find(|&i| {
        (hay[i] == lower || hay[i] == upper)
            && hay[i + 1..i + needle.len()].eq_ignore_ascii_case(rest)
    })
}

/// The first `max` bytes of `text` (on a character boundary), whitespace
/// collapsed, with an ellipsis when cut.
pub fn head(text: &str, max: usize) -> String {
    let cut = truncate(text.trim(), max);
    let mut out = collapse_whitespace(cut);
    if cut.len() < text.trim().len() {
        out.push('…');
    }
    out
}

fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_masks_actor_links_and_drops_citations() {
        let raw = "[Kinsing](https://attack.mitre.org/software/S0599) has searched <code>bash_history</code> \
                   for [credentials](https://attack.mitre.org/techniques/T1552).(Citation: Aqua Kinsing April 2020)";
        let cleaned = clean(raw);
        assert!(!cleaned.contains("Kinsing"), "{cleaned}");
        assert!(!cleaned.contains("Citation"), "{cleaned}");
        assert!(!cleaned.contains("<code>"), "{cleaned}");
        assert!(!cleaned.contains("https"), "{cleaned}");
        assert_eq!(
            tokens(&cleaned, usize::MAX),
            ["has", "searched", "bash_history", "for", "credentials"]
        );
    }

    #[test]
    fn tokens_split_paths_and_flags() {
        let t = tokens(
            r"C:\Windows\System32\schtasks.exe /create /tn x",
            usize::MAX,
        );
        assert_eq!(
            t,
            ["windows", "system32", "schtasks", "exe", "create", "tn"]
        );
        assert_eq!(tokens("a b cd", 1), ["cd"]);
    }

    #[test]
    fn features_are_unigrams_then_bigrams() {
        let t = tokens("Scheduled Task created", usize::MAX);
        assert_eq!(
            features(&t),
            [
                "scheduled",
                "task",
                "created",
                "scheduled task",
                "task created"
            ]
        );
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        // "é" is two bytes: cutting at 1 byte must back off to 0.
        assert_eq!(truncate("é", 1), "");
        assert_eq!(truncate("abé", 3), "ab");
        assert_eq!(truncate("abc", 10), "abc");
    }

    #[test]
    fn excerpt_centres_on_the_term() {
        let text = "Adversaries may abuse the Windows Task Scheduler to perform task scheduling.";
        let e = excerpt(text, "task scheduler", 10).expect("term present");
        assert!(e.contains("Task Scheduler"), "{e}");
        assert!(e.starts_with('…') && e.ends_with('…'), "{e}");
        assert_eq!(excerpt(text, "kerberos", 10), None);
        // Non-ASCII text around the match keeps character boundaries.
        let e = excerpt("ééééé schtasks ééééé", "schtasks", 3).expect("term present");
        assert_eq!(e, "…é schtasks é…");
    }
}
