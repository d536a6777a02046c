//! cloud-init user-data for worker instances, from a template
//! (`deploy/cloud-init/nommerd.yaml` unless `ec2.user_data_template` names
//! another) with `{{name}}` placeholders.

pub const BUILT_IN: &str = include_str!("../../../deploy/cloud-init/nommerd.yaml");

pub struct UserData<'a> {
    pub feederd_url: &'a str,
    pub worker_token: &'a str,
    pub max_jobs: u32,
    pub max_inactivity_s: u64,
    pub region: &'a str,
}

/// A TOML basic string's contents: quotes and backslashes escaped, no
/// newlines, so a value cannot add settings of its own.
fn toml_escape(value: &str) -> String {
    value
        .chars()
        .filter(|c| !c.is_control())
        .flat_map(|c| match c {
            '"' => vec!['\\', '"'],
            '\\' => vec!['\\', '\\'],
            c => vec![c],
        })
        .collect()
}

pub fn render(template: &str, values: &UserData) -> String {
    template
        .replace("{{feederd_url}}", &toml_escape(values.feederd_url))
        .replace("{{worker_token}}", &toml_escape(values.worker_token))
        .replace("{{max_jobs}}", &values.max_jobs.to_string())
        .replace("{{max_inactivity}}", &values.max_inactivity_s.to_string())
        .replace("{{region}}", &toml_escape(values.region))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_template_fills_every_placeholder_and_carries_no_keys() {
        let text = render(
            BUILT_IN,
            &UserData {
                feederd_url: "http://feederd.internal:8001",
                worker_token: "tok\"en",
                max_jobs: 3,
                max_inactivity_s: 600,
                region: "eu-west-1",
            },
        );
        assert!(text.starts_with("#cloud-config"));
        assert!(!text.contains("{{"), "{text}");
        assert!(text.contains("feederd_url = \"http://feederd.internal:8001\""));
        assert!(text.contains(r#"worker_token = "tok\"en""#), "{text}");
        assert!(text.contains("max_encoding_jobs_per_ec2_instance = 3"));
        for secret in ["aws_access_key_id", "AWS_SECRET", "secret_access_key"] {
            assert!(!text.to_lowercase().contains(&secret.to_lowercase()));
        }
    }
}
