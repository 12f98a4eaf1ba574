//! What is written for people and programs: the man page and completions, the JSON Schemas,
//! the import graph of the library, and the fuzz corpora replayed.

mod docs;
mod fuzz_corpus;
mod import_graph;
mod schemas;
