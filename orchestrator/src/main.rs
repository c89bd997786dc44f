//! `chaos`: the syftchaos orchestrator (work in progress).
fn main() {}
