//! The man page and the shell completions, generated from the clap definition and checked in
//! under `doc/`: this test fails when they differ from what the flags generate now (a flag
//! added, renamed or documented differently), and `GC_UPDATE_DOCS=1 cargo test --test docs`
//! writes them again. It also checks the man page against `--help`: every flag the binary
//! prints is in it.

mod common;

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;
use gc_partition::cli::Args;

fn doc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("doc")
}

/// Every generated file: the man page and one completion script per shell.
fn generated() -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut man = Vec::new();
    clap_mangen::Man::new(Args::command()).render(&mut man).unwrap();
    out.push((doc_dir().join("gc_partition.1"), man));
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Args::command(), "gc_partition", &mut script);
        let name = match shell {
            Shell::Bash => "gc_partition.bash",
            Shell::Zsh => "_gc_partition",
            _ => "gc_partition.fish",
        };
        out.push((doc_dir().join("completions").join(name), script));
    }
    out
}

#[test]
fn the_checked_in_man_page_and_completions_are_generated_from_the_flags() {
    let update = std::env::var_os("GC_UPDATE_DOCS").is_some();
    for (path, want) in generated() {
        if update {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &want).unwrap();
            continue;
        }
        let have = std::fs::read(&path).unwrap_or_default();
        assert!(
            have == want,
            "{} is not what the flags generate: run `GC_UPDATE_DOCS=1 cargo test --test docs` and commit it",
            path.display()
        );
    }
}

#[test]
fn the_man_page_has_every_flag_of_help() {
    let help = common::gc_binary(&["--help"], None, &[]);
    assert_eq!(help.status.code(), Some(0));
    let help = String::from_utf8(help.stdout).unwrap();
    let flags = |text: &str| -> std::collections::BTreeSet<String> {
        let words = text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'));
        words.filter(|w| w.starts_with("--") && w.len() > 2).map(str::to_owned).collect()
    };
    let in_help = flags(&help);
    assert!(in_help.len() >= 20, "{in_help:?}");
    let man = std::fs::read_to_string(doc_dir().join("gc_partition.1")).unwrap();
    // roff escapes each `-` of a flag as `\-` and sets it in bold (`\fB...\fR`).
    let plain = ["\\fB", "\\fI", "\\fR"].iter().fold(man.replace("\\-", "-"), |text, font| text.replace(font, " "));
    let in_man = flags(&plain);
    let missing: Vec<_> = in_help.difference(&in_man).collect();
    assert!(missing.is_empty(), "in --help but not in doc/gc_partition.1: {missing:?}");
}
