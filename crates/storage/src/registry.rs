//! Which backend serves each URI scheme. The builtin registry has one line
//! per scheme; a new scheme is a module implementing [`Backend`] and one
//! line here (its name and URI form are a row of `Scheme::BUILTIN`, or
//! registered at run time with [`Registry::register`]).

use crate::backend::Backend;
use crate::object::{azure::Azure, gcs::Gcs, s3::S3, ObjectConfig};
use crate::{file::FileBackend, http::HttpBackend};
use nommer_model::uri::Scheme;
use std::sync::Arc;

#[derive(Clone, Default)]
pub struct Registry {
    backends: Vec<(Scheme, Arc<dyn Backend>)>,
}

impl Registry {
    /// Every scheme this build serves, with `objects`' settings.
    pub fn builtin(objects: &ObjectConfig) -> Registry {
        let web = Arc::new(HttpBackend::default());
        let mut registry = Registry::default();
        registry.add(Scheme::FILE, Arc::new(FileBackend));
        registry.add(Scheme::HTTP, web.clone());
        registry.add(Scheme::HTTPS, web);
        registry.add(Scheme::S3, Arc::new(S3::backend(&objects.s3)));
        registry.add(Scheme::GS, Arc::new(Gcs::backend(&objects.gcs)));
        registry.add(Scheme::AZ, Arc::new(Azure::backend(&objects.azure)));
        registry
    }

    fn add(&mut self, scheme: Scheme, backend: Arc<dyn Backend>) {
        self.backends.retain(|(s, _)| *s != scheme);
        self.backends.push((scheme, backend));
    }

    /// Serve `scheme` with `backend` (instead of any it had), and make the
    /// scheme's URIs parse from now on.
    pub fn register(&mut self, scheme: Scheme, backend: Arc<dyn Backend>) -> Result<(), String> {
        Scheme::register(scheme)?;
        self.add(scheme, backend);
        Ok(())
    }

    pub fn get(&self, scheme: Scheme) -> Option<&Arc<dyn Backend>> {
        self.backends
            .iter()
            .find(|(s, _)| *s == scheme)
            .map(|(_, backend)| backend)
    }

    /// The schemes served, in registration order.
    pub fn schemes(&self) -> Vec<Scheme> {
        self.backends.iter().map(|(s, _)| *s).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_registry_serves_every_builtin_scheme_once() {
        let registry = Registry::builtin(&ObjectConfig::default());
        assert_eq!(registry.schemes(), Scheme::BUILTIN.to_vec());
    }
}
