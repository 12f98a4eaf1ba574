//! The man page and the shell completions, generated from the clap definition and checked in
//! under `doc/`: this test fails when they differ from what the flags generate now (a flag
//! added, renamed or documented differently), and `GC_UPDATE_DOCS=1 cargo test --test docs docs::`
//! writes them again. It also checks the man page against `--help`: every flag the binary
//! prints is in it; and the prose pages under `doc/` (`*.md`, written by hand) against the clap
//! definition: every long flag `--help` shows is named in at least one of them.

use std::collections::BTreeSet;
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
            "{} is not what the flags generate: run `GC_UPDATE_DOCS=1 cargo test --test docs docs::` and commit it",
            path.display()
        );
    }
}

/// The `--flag` words of `text`: a flag ends at the first character that cannot be in one, so
/// `--max-delete-rate` is not read as `--max-delete`.
fn flags(text: &str) -> BTreeSet<String> {
    let words = text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'));
    words.filter(|w| w.starts_with("--") && w.len() > 2).map(str::to_owned).collect()
}

#[test]
fn the_man_page_has_every_flag_of_help() {
    let help = common::gc_binary(&["--help"], None, &[]);
    assert_eq!(help.status.code(), Some(0));
    let help = String::from_utf8(help.stdout).unwrap();
    let in_help = flags(&help);
    assert!(in_help.len() >= 20, "{in_help:?}");
    let man = std::fs::read_to_string(doc_dir().join("gc_partition.1")).unwrap();
    // roff escapes each `-` of a flag as `\-` and sets it in bold (`\fB...\fR`).
    let plain = ["\\fB", "\\fI", "\\fR"].iter().fold(man.replace("\\-", "-"), |text, font| text.replace(font, " "));
    let in_man = flags(&plain);
    let missing: Vec<_> = in_help.difference(&in_man).collect();
    assert!(missing.is_empty(), "in --help but not in doc/gc_partition.1: {missing:?}");
}

/// Every long flag `gc_partition --help` shows, from the clap definition: the arguments of the
/// built command (so clap's own `--help` and `--version` too), hidden ones left out.
fn long_flags_of_help() -> BTreeSet<String> {
    let mut command = Args::command();
    command.build();
    let arguments = command.get_arguments().filter(|a| !a.is_hide_set());
    arguments.filter_map(|a| a.get_long()).map(|long| format!("--{long}")).collect()
}

/// The prose pages under `doc/` (`*.md`, any depth): not the man page or the completions,
/// which are generated from the flags and would name every one of them anyway.
fn doc_pages(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut pages = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            pages.extend(doc_pages(&path));
        } else if path.extension().is_some_and(|ext| ext == "md") {
            let text = std::fs::read_to_string(&path).unwrap();
            pages.push((path, text));
        }
    }
    pages
}

#[test]
fn every_flag_of_help_is_in_a_doc_page() {
    let in_help = long_flags_of_help();
    assert!(in_help.len() >= 20, "{in_help:?}");
    // The clap definition is what the binary prints: every flag taken from it is in `--help`.
    let help = common::gc_binary(&["--help"], None, &[]);
    assert_eq!(help.status.code(), Some(0));
    let printed = flags(&String::from_utf8(help.stdout).unwrap());
    let not_printed: Vec<_> = in_help.difference(&printed).collect();
    assert!(not_printed.is_empty(), "in the clap definition but not in --help: {not_printed:?}");

    let pages = doc_pages(&doc_dir());
    assert!(pages.iter().any(|(path, _)| path.ends_with("running.md")), "doc/running.md is missing");
    let in_pages: BTreeSet<String> = pages.iter().flat_map(|(_, text)| flags(text)).collect();
    let missing: Vec<_> = in_help.difference(&in_pages).collect();
    assert!(
        missing.is_empty(),
        "in --help but in no page under doc/ (*.md): {missing:?}; document them (doc/running.md, \"Flags\")"
    );
}
