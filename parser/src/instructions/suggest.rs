//! "Did you mean" suggestions for misspelled keywords, flags and mount keys.

/// The candidate closest to `word` (case-insensitive edit distance), if it is close enough to be
/// a plausible typo: at most one edit for short words, up to a third of the word for longer
/// ones, or an abbreviation sharing a prefix of at least 3 characters (`--plat`, `--retry`).
pub(crate) fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    if word.is_empty() {
        return None;
    }
    let lower = word.to_lowercase();
    let allowed = (lower.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|c| (distance(&lower, &c.to_lowercase()), *c))
        .filter(|(d, c)| *d <= allowed || common_prefix(&lower, &c.to_lowercase()) >= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// How many leading characters two words share.
fn common_prefix(a: &str, b: &str) -> usize {
    a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count()
}

/// Edit distance over characters (optimal string alignment: insertions, deletions,
/// substitutions and transpositions of neighbours each cost one).
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("from", "from"), 0);
        assert_eq!(distance("form", "from"), 1);
    }

    #[test]
    fn suggests_close_words_only() {
        let c = ["from", "run", "copy", "workdir"];
        assert_eq!(did_you_mean("FORM", &c), Some("from"));
        assert_eq!(did_you_mean("wrokdir", &c), Some("workdir"));
        assert_eq!(did_you_mean("xyzzy", &c), None);
        assert_eq!(did_you_mean("", &c), None);
        assert_eq!(did_you_mean("cop", &c), Some("copy"));
        assert_eq!(did_you_mean("wor", &c), Some("workdir"));
    }
}
