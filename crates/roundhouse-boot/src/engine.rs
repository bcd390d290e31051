//! The two external engines a request may need: Go-style templates (`gotmpl`) and Butane
//! translation (`butane`). Everything else in the server goes through these few functions, so
//! the engines can evolve without touching selection or transport code.

use std::sync::Arc;

use bootdata::Group;

use crate::labels::Labels;

/// A parsed template, ready to execute many times (shared between requests).
#[derive(Debug, Clone)]
pub struct Template {
    inner: Arc<gotmpl::Template>,
}

/// Parses template `text`; `name` appears in error messages.
pub fn compile(name: &str, text: &str) -> Result<Template, String> {
    gotmpl::Template::parse(name, text)
        .map(|t| Template { inner: Arc::new(t) })
        .map_err(|e| e.to_string())
}

impl Template {
    /// Executes the template over matchbox's data for this group and request, with
    /// `missingkey=error` and the engine's default bounds on output and work.
    pub fn render(
        &self,
        group: &Group,
        labels: &Labels,
        raw_query: &str,
    ) -> Result<String, String> {
        let metadata = serde_json::Value::Object(group.metadata.clone());
        let data = gotmpl::matchbox_data(
            Some(&metadata),
            group.selector.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            &labels.to_map(),
            raw_query,
        )
        .map_err(|e| e.to_string())?;
        self.inner
            .execute_value(&data, &gotmpl::ExecOptions::default())
            .map_err(|e| e.to_string())
    }
}

/// Translates a Butane config to Ignition JSON bytes, compact as matchbox serves them. Local
/// file references are refused (no `--files-dir`): a served config must not read the server's
/// disk.
pub fn butane_to_ignition(text: &str) -> Result<Vec<u8>, String> {
    let translation =
        butane::translate(text, &butane::Options::default()).map_err(|e| e.to_string())?;
    Ok(butane::to_json(&translation.config, false).into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_matchbox_data() {
        let group: Group = serde_json::from_str(
            r#"{"id":"g","selector":{"UUID":"u1"},"metadata":{"n":1000000,"s":"x"}}"#,
        )
        .unwrap();
        let labels = Labels::parse("UUID=u1&foo=bar").unwrap();
        let t = compile(
            "t",
            "{{.uuid}} {{.n}} {{.s}} {{.request.query.foo}} {{index .request.query \"none\"}}|{{.request.raw_query}}",
        )
        .unwrap();
        assert_eq!(
            t.render(&group, &labels, "UUID=u1&foo=bar").unwrap(),
            "u1 1e+06 x bar |UUID=u1&foo=bar"
        );
        let missing = compile("m", "{{.missing}}").unwrap();
        assert!(
            missing
                .render(&group, &labels, "")
                .unwrap_err()
                .contains("missing")
        );
        assert!(compile("bad", "{{if}}").is_err());
    }

    #[test]
    fn butane_translation() {
        let ign = butane_to_ignition("variant: flatcar\nversion: 1.1.0\n").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&ign).unwrap();
        assert_eq!(v["ignition"]["version"], "3.4.0");
        assert!(butane_to_ignition("ignition_version: 1\n").is_err());
    }
}
