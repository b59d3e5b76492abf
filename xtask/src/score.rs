//! Scoring a summary against an evaluation thread (`runtime/summarizer/eval/README.md`):
//!
//! * fact recall — a fact counts when every keyword group has one alternative in the summary;
//! * owner accuracy — on the summary's sentences that mention the task, the owner must be
//!   named; naming only another person of the thread counts as a wrong attribution;
//! * invented names — capitalised words that occur nowhere in the thread (and are not
//!   ordinary sentence words);
//! * invented dates — weekdays, months and clock times that the thread never mentions.
//!
//! Substring and word heuristics, stated so a reader can judge the figures; not a human rating.

use std::collections::BTreeSet;

use serde::Deserialize;

/// A key fact and the keyword groups that show it.
#[derive(Debug, Clone, Deserialize)]
pub struct Fact {
    /// The fact, in words.
    pub fact: String,
    /// Groups of alternatives; every group must match.
    pub keywords: Vec<Vec<String>>,
}

/// Who ends up doing what.
#[derive(Debug, Clone, Deserialize)]
pub struct Owner {
    /// The person.
    pub who: String,
    /// The task, in words.
    pub task: String,
    /// Words that identify the task in a summary.
    pub keywords: Vec<String>,
}

/// One chat message (kept as the request wants it).
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
pub struct Message {
    /// Sender.
    pub from: String,
    /// Time.
    pub at: String,
    /// Text.
    pub text: String,
}

/// One evaluation thread.
#[derive(Debug, Clone, Deserialize)]
pub struct Thread {
    /// File id.
    pub id: String,
    /// `group` or `one-to-one`.
    pub kind: String,
    /// `short` or `long`.
    pub length: String,
    /// The chat.
    pub messages: Vec<Message>,
    /// What a summary must carry.
    pub facts: Vec<Fact>,
    /// Who-does-what pairs.
    pub owners: Vec<Owner>,
    /// Every person named in the thread.
    pub names: Vec<String>,
}

/// One summary's score.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Score {
    /// Facts in the thread.
    pub facts: usize,
    /// Facts the summary carries.
    pub facts_found: usize,
    /// Owner pairs.
    pub owners: usize,
    /// Tasks attributed to the right person.
    pub owners_right: usize,
    /// Tasks attributed to someone else only.
    pub owners_wrong: usize,
    /// Capitalised words the thread never uses.
    pub invented_names: Vec<String>,
    /// Days, months and times the thread never mentions.
    pub invented_dates: Vec<String>,
}

/// Capitalised words a summary may use without them being in the thread.
const ORDINARY: &[&str] = &[
    "a",
    "about",
    "action",
    "actions",
    "after",
    "all",
    "also",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "before",
    "both",
    "but",
    "by",
    "can",
    "chat",
    "confirmed",
    "conversation",
    "decided",
    "decision",
    "decisions",
    "details",
    "did",
    "do",
    "does",
    "due",
    "each",
    "either",
    "everyone",
    "final",
    "finally",
    "for",
    "from",
    "group",
    "has",
    "have",
    "he",
    "her",
    "his",
    "how",
    "i",
    "if",
    "in",
    "is",
    "it",
    "its",
    "key",
    "meanwhile",
    "members",
    "messages",
    "more",
    "need",
    "needs",
    "new",
    "next",
    "no",
    "not",
    "note",
    "of",
    "on",
    "once",
    "one",
    "open",
    "or",
    "other",
    "others",
    "overall",
    "pending",
    "person",
    "plan",
    "plans",
    "point",
    "points",
    "question",
    "questions",
    "regarding",
    "she",
    "should",
    "so",
    "some",
    "still",
    "summary",
    "task",
    "tasks",
    "team",
    "that",
    "the",
    "their",
    "them",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "to",
    "two",
    "unread",
    "unresolved",
    "update",
    "updates",
    "we",
    "what",
    "when",
    "where",
    "whether",
    "which",
    "while",
    "who",
    "will",
    "with",
    "would",
    "yes",
    "you",
];

const WEEKDAYS: &[&str] = &[
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];
const MONTHS: &[&str] = &[
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

fn words(text: &str) -> Vec<&str> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .map(|w| w.trim_matches('\''))
        .filter(|w| !w.is_empty())
        .collect()
}

fn contains_word(haystack_lower: &str, word_lower: &str) -> bool {
    words(haystack_lower)
        .iter()
        .any(|w| *w == word_lower || w.strip_suffix("'s") == Some(word_lower))
}

/// Sentences (and bullet lines) of a summary.
fn sentences(summary: &str) -> Vec<String> {
    summary
        .lines()
        .flat_map(|l| l.split(". "))
        .map(str::to_lowercase)
        .filter(|s| !s.trim().is_empty())
        .collect()
}

/// Normalised clock times (`7.30pm` → `7:30`) in `text`.
fn times(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b: Vec<char> = text.chars().collect();
    for i in 0..b.len() {
        if (b[i] == ':' || b[i] == '.')
            && i >= 1
            && b[i - 1].is_ascii_digit()
            && i + 2 < b.len()
            && b[i + 1].is_ascii_digit()
            && b[i + 2].is_ascii_digit()
            && (i + 3 >= b.len() || !b[i + 3].is_ascii_digit())
        {
            let start = if i >= 2 && b[i - 2].is_ascii_digit() {
                i - 2
            } else {
                i - 1
            };
            let hour: u32 = b[start..i].iter().collect::<String>().parse().unwrap_or(99);
            if hour < 24 {
                out.insert(format!("{}:{}{}", hour % 12, b[i + 1], b[i + 2]));
            }
        }
    }
    out
}

/// Scores `summary` against `thread`.
pub fn score(thread: &Thread, summary: &str) -> Score {
    let lower = summary.to_lowercase();
    let facts_found = thread
        .facts
        .iter()
        .filter(|f| {
            f.keywords
                .iter()
                .all(|group| group.iter().any(|k| lower.contains(&k.to_lowercase())))
        })
        .count();

    let sents = sentences(summary);
    let (mut right, mut wrong) = (0, 0);
    for o in &thread.owners {
        let about: Vec<&String> = sents
            .iter()
            .filter(|s| o.keywords.iter().any(|k| s.contains(&k.to_lowercase())))
            .collect();
        let who = o.who.to_lowercase();
        if about.iter().any(|s| contains_word(s, &who)) {
            right += 1;
        } else if about.iter().any(|s| {
            thread
                .names
                .iter()
                .any(|n| n.to_lowercase() != who && contains_word(s, &n.to_lowercase()))
        }) {
            wrong += 1;
        }
    }

    let mut corpus = String::new();
    for m in &thread.messages {
        corpus.push_str(&m.from);
        corpus.push(' ');
        corpus.push_str(&m.text);
        corpus.push('\n');
    }
    let corpus = corpus.to_lowercase();
    let corpus_words: BTreeSet<&str> = words(&corpus).into_iter().collect();
    let known = |w: &str| {
        corpus_words.contains(w)
            || corpus_words.iter().any(|c| c.strip_suffix("'s") == Some(w))
            || thread
                .names
                .iter()
                .any(|n| contains_word(&n.to_lowercase(), w))
    };
    let mut invented_names = BTreeSet::new();
    let mut invented_dates = BTreeSet::new();
    for w in words(summary) {
        let l = w.to_lowercase();
        let first = w.chars().next().unwrap_or(' ');
        if WEEKDAYS.contains(&l.as_str()) || MONTHS.contains(&l.as_str()) {
            // "Friday" is known when the thread says "Friday" or "Fri".
            if !corpus_words.contains(l.as_str()) && !corpus_words.contains(&l[..3]) {
                invented_dates.insert(w.to_owned());
            }
            continue;
        }
        if first.is_uppercase()
            && w.chars().count() > 1
            && !ORDINARY.contains(&l.as_str())
            && !known(&l)
        {
            invented_names.insert(w.to_owned());
        }
    }
    let thread_times = times(&corpus);
    for t in times(summary) {
        if !thread_times.contains(&t) {
            invented_dates.insert(t);
        }
    }
    Score {
        facts: thread.facts.len(),
        facts_found,
        owners: thread.owners.len(),
        owners_right: right,
        owners_wrong: wrong,
        invented_names: invented_names.into_iter().collect(),
        invented_dates: invented_dates.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread() -> Thread {
        serde_json::from_value(serde_json::json!({
            "id": "t", "kind": "group", "length": "short",
            "messages": [
                {"from": "Maya", "at": "x", "text": "Dinner moves to Fri at 7.30pm, Elm Street."},
                {"from": "Jonas", "at": "x", "text": "I'll buy the card. Ask Pedro?"},
                {"from": "Aiko", "at": "x", "text": "I'll collect the money."}
            ],
            "facts": [
                {"fact": "dinner Friday", "keywords": [["friday", "fri"], ["dinner"]]},
                {"fact": "7.30", "keywords": [["7.30", "7:30"]]}
            ],
            "owners": [
                {"who": "Jonas", "task": "card", "keywords": ["card"]},
                {"who": "Aiko", "task": "money", "keywords": ["money"]}
            ],
            "names": ["Maya", "Jonas", "Aiko", "Pedro"]
        }))
        .expect("thread")
    }

    #[test]
    fn a_faithful_summary_scores_fully() {
        let s = score(
            &thread(),
            "- The dinner is on Friday at 7:30pm on Elm Street.\n- Jonas buys the card.\n- Aiko collects the money.",
        );
        assert_eq!((s.facts_found, s.facts), (2, 2));
        assert_eq!((s.owners_right, s.owners_wrong), (2, 0));
        assert!(s.invented_names.is_empty(), "{:?}", s.invented_names);
        assert!(s.invented_dates.is_empty(), "{:?}", s.invented_dates);
    }

    #[test]
    fn swapped_owners_missing_facts_and_inventions_count_against() {
        let s = score(
            &thread(),
            "Dinner on Saturday at 8:15 with Robert. Aiko buys the card. Money: Jonas collects it.",
        );
        assert_eq!(s.facts_found, 0);
        assert_eq!((s.owners_right, s.owners_wrong), (0, 2));
        assert_eq!(s.invented_names, vec!["Robert".to_owned()]);
        assert_eq!(
            s.invented_dates,
            vec!["8:15".to_owned(), "Saturday".to_owned()]
        );
    }

    #[test]
    fn a_task_not_mentioned_is_neither_right_nor_wrong() {
        let s = score(&thread(), "Dinner is on Friday.");
        assert_eq!((s.owners_right, s.owners_wrong, s.owners), (0, 0, 2));
        assert_eq!(s.facts_found, 1);
    }

    #[test]
    fn the_repository_eval_set_parses_and_its_own_facts_match_their_keywords() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime/summarizer/eval");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).expect("eval dir") {
            let p = e.expect("entry").path();
            if p.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let t: Thread =
                serde_json::from_slice(&std::fs::read(&p).expect("read")).expect("parse");
            assert!((3..=6).contains(&t.facts.len()), "{}", t.id);
            assert!(!t.owners.is_empty(), "{}", t.id);
            // A summary that is exactly the facts and the owner sentences scores fully.
            let ideal: String = t
                .facts
                .iter()
                .map(|f| {
                    f.keywords
                        .iter()
                        .map(|g| g[0].clone())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .chain(
                    t.owners
                        .iter()
                        .map(|o| format!("{} will {}", o.who, o.keywords[0])),
                )
                .collect::<Vec<_>>()
                .join(".\n");
            let s = score(&t, &ideal);
            assert_eq!(s.facts_found, s.facts, "{}: {ideal}", t.id);
            assert_eq!(s.owners_right, s.owners, "{}: {ideal}", t.id);
            n += 1;
        }
        assert!(n >= 20, "the set has {n} threads");
    }
}
