//! rapport-cli's integration tests, one binary: the `rapport` binary as a user runs it
//! (`cli`), and as an operator runs sync, `config check` and `serve`, SIGKILLs included
//! (`sync`).

mod cli;
mod refresh;
mod sync;
