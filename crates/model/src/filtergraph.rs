//! A filtergraph reader just deep enough to see which filters a graph names and
//! which options they get, so that file-reading filters are refused at submit.
//!
//! Syntax (ffmpeg-filters(1) "Filtergraph syntax"): chains separated by `;`,
//! filters by `,`, each `[in]...name@id=args[out]`, args separated by `:` as
//! `key=value` or positional values; `'...'` quotes and `\` escapes at every level.

/// One filter as written in a graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterRef {
    pub name: String,
    /// `(Some(key), value)` for `key=value`, `(None, value)` for positional.
    pub args: Vec<(Option<String>, String)>,
}

/// Split at `sep` outside quotes and escapes, and (for graph-level splits)
/// outside `[...]` link labels.
fn split_top(text: &str, sep: char, respect_brackets: bool) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars();
    let mut quoted = false;
    let mut bracket = 0usize;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                current.push(c);
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            '\'' => {
                quoted = !quoted;
                current.push(c);
            }
            '[' if respect_brackets && !quoted => {
                bracket += 1;
                current.push(c);
            }
            ']' if respect_brackets && !quoted => {
                bracket = bracket.saturating_sub(1);
                current.push(c);
            }
            c if c == sep && !quoted && bracket == 0 => parts.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    parts.push(current);
    parts
}

/// Remove one level of quoting and escaping.
fn unquote(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '\'' => quoted = !quoted,
            '\\' if !quoted => {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            }
            c => out.push(c),
        }
    }
    out
}

fn strip_labels(mut text: &str) -> &str {
    loop {
        text = text.trim();
        if let Some(rest) = text.strip_prefix('[') {
            match rest.find(']') {
                Some(end) => text = &rest[end + 1..],
                None => return text,
            }
        } else {
            break;
        }
    }
    while text.ends_with(']') {
        match text.rfind('[') {
            Some(start) => text = text[..start].trim_end(),
            None => break,
        }
    }
    text
}

/// Every filter a graph names, in order.
pub fn parse(graph: &str) -> Vec<FilterRef> {
    let mut filters = Vec::new();
    for chain in split_top(graph, ';', true) {
        for filter in split_top(&chain, ',', true) {
            let filter = strip_labels(&filter);
            if filter.is_empty() {
                continue;
            }
            let (head, args) = match split_top(filter, '=', false).as_slice() {
                [head] => (head.clone(), String::new()),
                [head, rest @ ..] => (head.clone(), rest.join("=")),
                [] => continue,
            };
            let name = unquote(head.trim());
            let name = name.split('@').next().unwrap_or("").trim().to_string();
            let args = if args.is_empty() {
                Vec::new()
            } else {
                split_top(&args, ':', false)
                    .into_iter()
                    .map(|arg| match split_top(&arg, '=', false).as_slice() {
                        [value] => (None, unquote(value)),
                        [key, rest @ ..] => (
                            Some(unquote(key).trim().to_string()),
                            unquote(&rest.join("=")),
                        ),
                        [] => (None, String::new()),
                    })
                    .collect()
            };
            filters.push(FilterRef { name, args });
        }
    }
    filters
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_and_args() {
        let graph = parse("yadif,scale='640:trunc(ow/a/2)*2'");
        assert_eq!(graph.len(), 2);
        assert_eq!(graph[0].name, "yadif");
        assert_eq!(graph[1].name, "scale");
        assert_eq!(
            graph[1].args,
            vec![(None, "640:trunc(ow/a/2)*2".to_string())]
        );
    }

    #[test]
    fn labels_chains_and_instance_ids() {
        let graph = parse(
            "[0:v]split[a][b];[a]movie@m=/etc/passwd[x];[b]drawtext=textfile=/etc/shadow:x=1[y]",
        );
        let names: Vec<_> = graph.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["split", "movie", "drawtext"]);
        assert_eq!(graph[1].args, vec![(None, "/etc/passwd".to_string())]);
        assert_eq!(
            graph[2].args[0],
            (Some("textfile".to_string()), "/etc/shadow".to_string())
        );
    }

    #[test]
    fn quoted_separators_do_not_split() {
        let graph = parse("drawtext=text='a,b;c':fontsize=20");
        assert_eq!(graph.len(), 1);
        assert_eq!(graph[0].args[0], (Some("text".into()), "a,b;c".into()));
    }
}
