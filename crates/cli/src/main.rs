//! `nexus-attack`: every operator command, including `serve`.

fn main() {}
