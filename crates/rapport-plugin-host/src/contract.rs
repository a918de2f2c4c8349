//! The contract versions this host runs, one module each. A new contract version gets a
//! new module (`v0_2_0`) with its own `bindgen!` over `wit/v0.2.0`; the old module stays,
//! so plugins built against older versions keep loading.

use crate::sandbox::Sandbox;
use wasmtime::component::Linker;

pub(crate) mod v0_1_0;

/// The package every version's exports live in.
pub(crate) const PACKAGE: &str = "rapport:connector";

/// Links every supported version's host imports.
pub(crate) fn add_to_linker(linker: &mut Linker<Sandbox>) -> wasmtime::Result<()> {
    v0_1_0::add_to_linker(linker)
}
