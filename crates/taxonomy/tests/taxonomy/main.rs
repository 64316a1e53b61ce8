//! Integration tests of the taxonomy crate on the real ATT&CK releases in
//! `shared/attack` and on small hand-written bundles. One binary, one module
//! per area.

mod bad_input;
mod bundles;
mod diff;
mod parse;
mod util;
mod validate;
