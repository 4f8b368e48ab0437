//! examples/wordcount on two cores: the sharded, batched count equals a count made here, on
//! several files at once and with the one-message-per-word mode too.

mod support;

use std::collections::HashMap;
use std::process::Command;

use support::{example_path, TempDir};

/// A deterministic text of `lines` lines of words drawn from `vocabulary` words.
fn text(lines: usize, vocabulary: u64, seed: u64) -> String {
    let mut state = seed;
    let mut out = String::new();
    for _ in 0..lines {
        for _ in 0..7 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            out.push_str(&format!("w{} ", (state >> 33) % vocabulary));
        }
        out.push_str("\tend\n");
    }
    out
}

#[test]
fn counts_match_a_count_made_here() {
    let dir = TempDir::new("example-wordcount");
    let mut expected: HashMap<String, u64> = HashMap::new();
    let mut paths = Vec::new();
    for i in 0..3 {
        let body = text(20_000 + i * 5_000, 3_000, i as u64 + 1);
        for word in body.split_ascii_whitespace() {
            *expected.entry(word.to_owned()).or_default() += 1;
        }
        let path = dir.path().join(format!("part{i}.txt"));
        std::fs::write(&path, body).unwrap();
        paths.push(path);
    }
    let mut top: Vec<(&String, &u64)> = expected.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    let mut want = format!(
        "words {}\ndistinct {}\n",
        expected.values().sum::<u64>(),
        expected.len()
    );
    for (word, count) in top.iter().take(5) {
        want.push_str(&format!("{count} {word}\n"));
    }
    for extra in [&[][..], &["--batch", "1000"][..]] {
        let out = Command::new(example_path("wordcount"))
            .args(["--cores", "2", "--top", "5"])
            .args(extra)
            .args(&paths)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), want, "{extra:?}");
    }
    // One message per word: slow, but the same answer (a small file).
    let small = dir.path().join("small.txt");
    std::fs::write(&small, text(300, 50, 9)).unwrap();
    let batched = Command::new(example_path("wordcount"))
        .args(["--cores", "2"])
        .arg(&small)
        .output()
        .unwrap();
    let per_word = Command::new(example_path("wordcount"))
        .args(["--cores", "2", "--per-word"])
        .arg(&small)
        .output()
        .unwrap();
    assert!(per_word.status.success());
    assert_eq!(per_word.stdout, batched.stdout);
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let out = Command::new(example_path("wordcount"))
        .args(["--cores", "2", "/nonexistent/words.txt"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/words.txt"), "{stderr}");
}
