//! docs/OPTIONS.md lists the allowlist exactly as the tables hold it.

use nommer_model::options::Allowlist;

const BEGIN: &str = "<!-- allowlist:begin -->\n";
const END: &str = "<!-- allowlist:end -->";

#[test]
fn docs_list_the_allowlist() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/OPTIONS.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let start = doc
        .find(BEGIN)
        .expect("docs/OPTIONS.md has no allowlist:begin marker")
        + BEGIN.len();
    let end = doc
        .find(END)
        .expect("docs/OPTIONS.md has no allowlist:end marker");
    let listed = Allowlist::builtin().markdown();
    if std::env::var_os("NOMMER_BLESS").is_some() {
        let updated = format!("{}{listed}{}", &doc[..start], &doc[end..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    assert!(
        doc[start..end] == listed,
        "docs/OPTIONS.md's allowlist differs from the tables; run `NOMMER_BLESS=1 cargo test -p nommer-model --test docs`"
    );
}
