//! Where a preset comes from: built in, feederd's config, or the API (the
//! store). Names are unique across the three; only API presets change.

use crate::AppState;
use nommer_model::presets::{self, Origin};
use nommer_model::{CodedError, ErrorCode};
use serde_json::Value;

/// A preset and where it comes from.
pub struct Found {
    pub body: Value,
    pub origin: Origin,
}

impl Found {
    /// As the API shows it: its body with `origin`.
    pub fn to_api(&self) -> Value {
        let mut body = self.body.clone();
        if let Value::Object(map) = &mut body {
            map.insert("origin".into(), Value::String(self.origin.as_str().into()));
        }
        body
    }
}

fn store_error(e: nommer_store::StoreError) -> CodedError {
    CodedError::new(e.code(), e.to_string())
}

/// The built-in or config preset of this name, which the API cannot change.
pub fn fixed(state: &AppState, name: &str) -> Option<Found> {
    let named = |p: &&Value| p["name"] == name;
    if let Some(body) = presets::builtin().iter().find(named) {
        return Some(Found {
            body: body.clone(),
            origin: Origin::Builtin,
        });
    }
    state.config.presets.iter().find(named).map(|body| Found {
        body: body.clone(),
        origin: Origin::Config,
    })
}

pub async fn find(state: &AppState, name: &str) -> Result<Option<Found>, CodedError> {
    if let Some(found) = fixed(state, name) {
        return Ok(Some(found));
    }
    let stored = state.store.get_preset(name).await.map_err(store_error)?;
    Ok(stored.map(|body| Found {
        body,
        origin: Origin::Api,
    }))
}

/// Every preset: built in, then config, then the API's, each by name.
pub async fn list(state: &AppState) -> Result<Vec<Found>, CodedError> {
    let mut all: Vec<Found> = presets::builtin()
        .iter()
        .map(|body| Found {
            body: body.clone(),
            origin: Origin::Builtin,
        })
        .collect();
    all.extend(state.config.presets.iter().map(|body| Found {
        body: body.clone(),
        origin: Origin::Config,
    }));
    let stored = state.store.list_presets().await.map_err(store_error)?;
    // A stored preset that a built-in or config one now shadows is not
    // the one a job gets: it is not listed either.
    let stored = stored
        .into_iter()
        .filter(|body| fixed(state, body["name"].as_str().unwrap_or_default()).is_none());
    all.extend(stored.map(|body| Found {
        body,
        origin: Origin::Api,
    }));
    Ok(all)
}

/// The preset a job body names, expanded into it; the body as it was when
/// it names none.
pub async fn expand(
    state: &AppState,
    payload: serde_json::Map<String, Value>,
) -> Result<(serde_json::Map<String, Value>, Option<String>), CodedError> {
    let name = match payload.get("preset") {
        None | Some(Value::Null) => return Ok((payload, None)),
        Some(Value::String(name)) => name.clone(),
        Some(_) => {
            return Err(CodedError::new(
                ErrorCode::InvalidField,
                "preset must be a preset's name",
            ))
        }
    };
    let Some(found) = find(state, &name).await? else {
        return Err(CodedError::new(
            ErrorCode::UnknownPreset,
            format!(
                "no preset \"{}\"; GET /v1/presets lists them",
                name.chars().take(64).collect::<String>()
            ),
        ));
    };
    Ok((presets::expand(&payload, &found.body)?, Some(name)))
}
