//! Problems found in a document a client sent (a config, its hooks), each with the JSON path
//! of the value at fault, in the form Portkey's validation errors take.

/// `path: <path>, message: <why>` strings, as Portkey's `errors` array. Paths are written the
/// way Portkey's schema validator (zod) prints them: the keys and indices below the root joined
/// by commas (`targets,0,strategy,mode`), empty for the root itself.
///
/// The second field is the first error of Portkey's conditional router the document holds (an
/// unknown operator, an unknown target name): Portkey answers those with the router's own
/// message, not as schema problems.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<String>, Option<String>);

impl Problems {
    /// An error of the conditional router (the first one is kept).
    pub(crate) fn push_router(&mut self, message: String) {
        self.1.get_or_insert(message);
    }

    /// The router's error, when the document has no schema problem (those are found first).
    pub(crate) fn router_error(&self) -> Option<&str> {
        self.1.as_deref().filter(|_| self.0.is_empty())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty() && self.1.is_none()
    }

    /// `path` is the node's own notation (`config.targets[0].strategy.mode`).
    pub(crate) fn push(&mut self, path: &str, message: impl std::fmt::Display) {
        self.0
            .push(format!("path: {}, message: {message}", wire_path(path)));
    }
}

/// `config.targets[0].strategy.mode` → `targets,0,strategy,mode`; `config` → ``.
pub(crate) fn wire_path(path: &str) -> String {
    let rest = path.strip_prefix("config").unwrap_or(path);
    let mut out = String::with_capacity(rest.len());
    for part in rest.split(['.', '[', ']']).filter(|p| !p.is_empty()) {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(part);
    }
    out
}
