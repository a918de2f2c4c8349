//! The contract versions this host runs, one module each with its own `bindgen!` over
//! `wit/vX.Y.Z`. The newest (`current`) converts and checks what guests return; each
//! older module only upgrades its guests' values into the newest types, so plugins built
//! against older versions keep loading and nothing is checked twice. A new contract
//! version gets a new module and becomes `current`; the one before it learns to upgrade.

use crate::sandbox::Sandbox;
use wasmtime::component::Linker;

pub(crate) mod v0_1_0;
pub(crate) mod v0_2_0;

/// The newest contract version.
pub(crate) use v0_2_0 as current;

/// The package every version's exports live in.
pub(crate) const PACKAGE: &str = "rapport:connector";

/// Links every supported version's host imports.
pub(crate) fn add_to_linker(linker: &mut Linker<Sandbox>) -> wasmtime::Result<()> {
    v0_1_0::add_to_linker(linker)?;
    v0_2_0::add_to_linker(linker)
}

/// A connector's error message as the host keeps it: secrets already scrubbed by the
/// caller, control characters replaced, cut to
/// [`ERROR_MESSAGE_BYTES_MAX`](crate::limits::ERROR_MESSAGE_BYTES_MAX).
pub(crate) fn error_message(text: &str) -> String {
    let mut message = rapport_core::timeline::clean_text(text.to_owned());
    cut(&mut message, crate::limits::ERROR_MESSAGE_BYTES_MAX);
    message
}

/// A source id as an error message shows it: escaped, and cut to a readable length.
pub(crate) fn shown_id(source_id: &str) -> String {
    let mut shown = source_id.escape_debug().to_string();
    cut(&mut shown, 200);
    shown
}

/// Cuts `text` to at most `bytes_max` bytes on a character boundary, marking the cut.
fn cut(text: &mut String, bytes_max: usize) {
    if text.len() > bytes_max {
        let mut at = bytes_max.saturating_sub('…'.len_utf8());
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.truncate(at);
        text.push('…');
    }
}
