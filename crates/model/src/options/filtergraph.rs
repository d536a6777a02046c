//! Filtergraphs read with FFmpeg's own grammar (libavfilter/graphparser.c and
//! `process_options` in avfilter.c, 5.1) and written back in one canonical form.
//!
//! A graph is chains separated by `;`, filters by `,`, each filter
//! `[in]...NAME[@ID][=ARGS][out]...`. The filter name is read with
//! `av_get_token(.., "=,;[")`, its arguments with `av_get_token(.., "[],;")`,
//! a link label with `av_get_token(.., "]")`. Inside the arguments each
//! `key=value` or positional value is read with `av_get_token(.., ":")`.
//!
//! Positional values are named the way `process_options` names them: it walks
//! the filter's options in declared order, skipping aliases (options sharing
//! the previous one's slot). After a `key=value`, FFmpeg goes on walking from
//! wherever `key` is declared, child classes included, and for some filters
//! (lutyuv's `y` shares `c0`'s storage) that walk cannot be told from the
//! tables alone; so a positional value after a `key=value` is refused, as
//! ambiguous. The canonical form names every argument (`scale=w=640:h=-2`),
//! so ffmpeg is never left to map positions itself.

use super::token::{escape, get_token, WHITESPACES};

/// A filter as written: `args` still positional or keyed, as FFmpeg tokenised them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFilter {
    pub inputs: Vec<String>,
    pub name: String,
    pub instance: Option<String>,
    pub args: Vec<RawArg>,
    pub outputs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawArg {
    Positional(String),
    Keyed(String, String),
}

/// How a filter is joined to the one before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Join {
    /// `,`: the same chain.
    Chain,
    /// `;`: a new chain.
    Graph,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawGraph {
    /// The graph-level `sws_flags=...;` prefix, verbatim.
    pub sws_flags: Option<String>,
    /// Each filter with the join that precedes it (the first one's is `Chain`).
    pub filters: Vec<(Join, RawFilter)>,
}

/// A filter whose arguments all carry their option names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub inputs: Vec<String>,
    pub name: String,
    pub instance: Option<String>,
    pub args: Vec<(String, String)>,
    pub outputs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Graph {
    pub filters: Vec<(Join, Filter)>,
}

/// Why a graph cannot be read; FFmpeg would refuse it too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError(pub String);

const NAME_TERM: &[char] = &['=', ',', ';', '['];
const ARGS_TERM: &[char] = &['[', ']', ',', ';'];
const LABEL_TERM: &[char] = &[']'];
const ARG_TERM: &[char] = &[':'];

fn skip_ws(text: &mut &str) {
    *text = text.trim_start_matches(WHITESPACES);
}

fn labels(text: &mut &str) -> Result<Vec<String>, SyntaxError> {
    let mut found = Vec::new();
    while let Some(rest) = text.strip_prefix('[') {
        let mut rest = rest;
        let name = get_token(&mut rest, LABEL_TERM);
        if name.is_empty() {
            return Err(SyntaxError("a link label is empty".into()));
        }
        let Some(after) = rest.strip_prefix(']') else {
            return Err(SyntaxError(format!(
                "the link label [{name} has no closing ]"
            )));
        };
        *text = after;
        skip_ws(text);
        found.push(name);
    }
    Ok(found)
}

/// FFmpeg's `get_key`: option names are `[A-Za-z0-9-_/.]`, then `=`.
fn get_key(text: &mut &str) -> Option<String> {
    let start = text.trim_start_matches(WHITESPACES);
    let end = start
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/' | '.')))
        .unwrap_or(start.len());
    let key = &start[..end];
    let after = start[end..].trim_start_matches(WHITESPACES);
    let rest = after.strip_prefix('=')?;
    *text = rest;
    Some(key.to_string())
}

/// The arguments of one filter, tokenised as `process_options` does.
pub fn split_args(args: &str) -> Vec<RawArg> {
    let mut text = args;
    let mut out = Vec::new();
    while !text.is_empty() {
        let arg = match get_key(&mut text) {
            Some(key) => RawArg::Keyed(key, get_token(&mut text, ARG_TERM)),
            None => RawArg::Positional(get_token(&mut text, ARG_TERM)),
        };
        out.push(arg);
        if let Some(rest) = text.strip_prefix(':') {
            text = rest;
        }
    }
    out
}

/// Split `NAME@ID` as graphparser's `create_filter` does: at the first `@`
/// among the first 29 bytes that has something after it.
fn split_instance(name: &str) -> (String, Option<String>) {
    for (at, c) in name.char_indices() {
        if at >= 29 {
            break;
        }
        if c == '@' && at + 1 < name.len() {
            return (name[..at].to_string(), Some(name[at + 1..].to_string()));
        }
    }
    (name.to_string(), None)
}

/// Read a graph exactly as `avfilter_graph_parse2` does.
pub fn parse(graph: &str) -> Result<RawGraph, SyntaxError> {
    let mut text = graph.trim_start_matches(WHITESPACES);
    let mut sws_flags = None;
    if let Some(rest) = text.strip_prefix("sws_flags=") {
        let Some(end) = rest.find(';') else {
            return Err(SyntaxError("sws_flags is not ended with ';'".into()));
        };
        sws_flags = Some(rest[..end].to_string());
        text = &rest[end + 1..];
    }
    let mut filters = Vec::new();
    let mut join = Join::Chain;
    loop {
        skip_ws(&mut text);
        let inputs = labels(&mut text)?;
        let name = get_token(&mut text, NAME_TERM);
        let args = match text.strip_prefix('=') {
            Some(rest) => {
                text = rest;
                get_token(&mut text, ARGS_TERM)
            }
            None => String::new(),
        };
        if name.is_empty() {
            return Err(SyntaxError("a filter has no name".into()));
        }
        let outputs = labels(&mut text)?;
        let (name, instance) = split_instance(&name);
        filters.push((
            join,
            RawFilter {
                inputs,
                name,
                instance,
                args: split_args(&args),
                outputs,
            },
        ));
        skip_ws(&mut text);
        let mut chars = text.chars();
        match chars.next() {
            None => break,
            Some(',') => join = Join::Chain,
            Some(';') => join = Join::Graph,
            Some(_) => {
                return Err(SyntaxError(format!(
                    "cannot read the graph from \"{}\"",
                    text.chars().take(40).collect::<String>()
                )))
            }
        }
        text = chars.as_str();
    }
    Ok(RawGraph { sws_flags, filters })
}

/// Name every argument the way `process_options` would. `options` is the
/// filter's declared order as `(name, slot)`, aliases sharing a slot. A
/// positional value with no option left to take it is an error, as in FFmpeg
/// ("No option name near ...").
pub fn name_args(
    args: &[RawArg],
    options: &[(String, u32)],
) -> Result<Vec<(String, String)>, SyntaxError> {
    let next = |o: Option<usize>| match o {
        None if !options.is_empty() => Some(0),
        Some(i) if i + 1 < options.len() => Some(i + 1),
        _ => None,
    };
    let mut named = Vec::with_capacity(args.len());
    let mut at: Option<usize> = None;
    let mut slot: Option<u32> = None;
    let mut keyed = false;
    for arg in args {
        let mut shorthand = None;
        loop {
            at = next(at);
            let Some(i) = at else { break };
            if Some(options[i].1) == slot {
                continue;
            }
            slot = Some(options[i].1);
            shorthand = Some(i);
            break;
        }
        match arg {
            RawArg::Keyed(key, value) => {
                keyed = true;
                named.push((key.clone(), value.clone()));
            }
            RawArg::Positional(value) if keyed => {
                return Err(SyntaxError(format!(
                    "the value \"{value}\" follows a key=value; after one, name every argument"
                )));
            }
            RawArg::Positional(value) => {
                let Some(i) = shorthand else {
                    return Err(SyntaxError(format!(
                        "no option is left to take the value \"{value}\"; name it as key=value"
                    )));
                };
                named.push((options[i].0.clone(), value.clone()));
            }
        }
    }
    Ok(named)
}

/// The canonical text of a graph: labels, names and `key=value` arguments,
/// escaped for each level of FFmpeg's grammar.
pub fn serialize(graph: &Graph) -> String {
    let mut out = String::new();
    for (index, (join, filter)) in graph.filters.iter().enumerate() {
        if index > 0 {
            out.push(match join {
                Join::Chain => ',',
                Join::Graph => ';',
            });
        }
        for label in &filter.inputs {
            out.push_str(&format!("[{}]", escape(label, LABEL_TERM)));
        }
        out.push_str(&filter.name);
        if let Some(id) = &filter.instance {
            out.push('@');
            out.push_str(id);
        }
        if !filter.args.is_empty() {
            let args: Vec<String> = filter
                .args
                .iter()
                .map(|(key, value)| format!("{key}={}", escape(value, ARG_TERM)))
                .collect();
            out.push('=');
            out.push_str(&escape(&args.join(":"), ARGS_TERM));
        }
        for label in &filter.outputs {
            out.push_str(&format!("[{}]", escape(label, LABEL_TERM)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(graph: &str) -> Vec<String> {
        parse(graph)
            .unwrap()
            .filters
            .into_iter()
            .map(|(_, f)| f.name)
            .collect()
    }

    fn scale() -> Vec<(String, u32)> {
        ["w", "width", "h", "height", "flags", "interl", "size", "s"]
            .iter()
            .zip([0, 0, 1, 1, 2, 3, 4, 4])
            .map(|(n, s)| (n.to_string(), s))
            .collect()
    }

    fn named(args: &str, options: &[(String, u32)]) -> Vec<(String, String)> {
        name_args(&split_args(args), options).unwrap()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_seed_scale_is_two_arguments() {
        let graph = parse("yadif,scale='640:trunc(ow/a/2)*2'").unwrap();
        let (_, scale_filter) = &graph.filters[1];
        assert_eq!(
            scale_filter.args,
            vec![
                RawArg::Positional("640".into()),
                RawArg::Positional("trunc(ow/a/2)*2".into())
            ]
        );
        assert_eq!(
            named("640:trunc(ow/a/2)*2", &scale()),
            pairs(&[("w", "640"), ("h", "trunc(ow/a/2)*2")])
        );
    }

    #[test]
    fn positions_are_named_in_declared_order() {
        // Each case checked against `ffmpeg -v debug` ("Setting 'X' to value").
        let s = scale();
        assert_eq!(
            named("64:32:bicubic", &s),
            pairs(&[("w", "64"), ("h", "32"), ("flags", "bicubic")])
        );
        assert_eq!(named("w=64:h=32", &s), pairs(&[("w", "64"), ("h", "32")]));
        assert_eq!(
            named("64:h=32:flags=lanczos", &s),
            pairs(&[("w", "64"), ("h", "32"), ("flags", "lanczos")])
        );
        assert_eq!(
            named("1:2:3:4:5", &s),
            pairs(&[
                ("w", "1"),
                ("h", "2"),
                ("flags", "3"),
                ("interl", "4"),
                ("size", "5")
            ])
        );
        // More values than options, and values after a key=value, are refused.
        assert!(name_args(&split_args("1:2:3:4:5:6"), &s).is_err());
        assert!(name_args(&split_args("h=100:200"), &s).is_err());
        assert!(name_args(&split_args("32:enable=1:16"), &s).is_err());
    }

    #[test]
    fn quotes_and_escapes_follow_av_get_token() {
        // A backslash inside quotes is literal: the quote closes and `movie` is a filter.
        assert_eq!(names(r"drawtext=text='a\',movie=/x"), ["drawtext", "movie"]);
        // `\]` inside a label is part of the label, not its end.
        assert_eq!(names(r"[a\];movie=/x]null"), ["null"]);
        assert_eq!(names(r"[a]null;movie=/x[b]"), ["null", "movie"]);
        assert_eq!(names("'mo'vie=/x"), ["movie"]);
        assert_eq!(names("null , movie@m = /x"), ["null", "movie"]);
        let graph = parse("drawtext=text='a,b;c':fontsize=20").unwrap();
        assert_eq!(
            graph.filters[0].1.args,
            vec![
                RawArg::Keyed("text".into(), "a,b;c".into()),
                RawArg::Keyed("fontsize".into(), "20".into())
            ]
        );
    }

    #[test]
    fn broken_graphs_are_refused() {
        for graph in [
            "",
            "scale=1:1,",
            "[a",
            "[]null",
            "null[a",
            "null,,null",
            "sws_flags=bicubic",
        ] {
            assert!(parse(graph).is_err(), "{graph:?}");
        }
        assert_eq!(
            parse("sws_flags=bicubic;null")
                .unwrap()
                .sws_flags
                .as_deref(),
            Some("bicubic")
        );
    }

    /// Random text over the grammar's own characters: the reader never
    /// panics, and whatever it reads writes back to a graph that reads the same.
    #[test]
    fn any_text_reads_without_panic_and_round_trips() {
        use rand::{Rng, SeedableRng};
        const ALPHABET: &[char] = &[
            'a', 'b', 'a', 'b', 'c', 'n', 'u', 'l', 'x', 'y', '0', '1', '=', ':', ',', ';', '[',
            ']', '\\', '\'', ' ', '\t', '@', '(', ')', '/', '*', '-', '.', '_', 'é',
        ];
        let options: Vec<(String, u32)> = ["a", "aa", "b", "c"]
            .iter()
            .zip([0, 0, 1, 2])
            .map(|(n, s)| (n.to_string(), s))
            .collect();
        let plain =
            |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        // Named as the check names them; None where the check would refuse.
        let named = |raw: &RawGraph| -> Option<Graph> {
            if raw.sws_flags.is_some() {
                return None;
            }
            let mut filters = Vec::new();
            for (join, f) in &raw.filters {
                if !plain(&f.name) || !f.instance.as_deref().is_none_or(plain) {
                    return None;
                }
                let args = name_args(&f.args, &options).ok()?;
                let filter = Filter {
                    inputs: f.inputs.clone(),
                    name: f.name.clone(),
                    instance: f.instance.clone(),
                    args,
                    outputs: f.outputs.clone(),
                };
                filters.push((*join, filter));
            }
            Some(Graph { filters })
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x6e6f6d);
        let mut read = 0;
        for _ in 0..30_000 {
            let len = rng.gen_range(0..28);
            let text: String = (0..len)
                .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())])
                .collect();
            let Some(graph) = parse(&text).ok().as_ref().and_then(named) else {
                continue;
            };
            read += 1;
            let written = serialize(&graph);
            let again = parse(&written).unwrap_or_else(|e| {
                panic!("{text:?} wrote {written:?}, which does not read: {e:?}")
            });
            let again = named(&again)
                .unwrap_or_else(|| panic!("{text:?} wrote {written:?}, which names differently"));
            assert_eq!(again, graph, "{text:?} wrote {written:?}");
            assert_eq!(serialize(&again), written);
        }
        assert!(read > 1000, "only {read} random graphs were readable");
    }

    #[test]
    fn serialized_graphs_read_back_the_same() {
        let graph = Graph {
            filters: vec![
                (
                    Join::Chain,
                    Filter {
                        inputs: vec!["0:v".into()],
                        name: "drawtext".into(),
                        instance: Some("t".into()),
                        args: pairs(&[
                            ("text", "it's 10:30, [ok]; \\ "),
                            ("x", "if(gt(t,1),10,20)"),
                        ]),
                        outputs: vec!["v".into()],
                    },
                ),
                (
                    Join::Graph,
                    Filter {
                        inputs: vec!["v".into()],
                        name: "null".into(),
                        instance: None,
                        args: vec![],
                        outputs: vec![],
                    },
                ),
            ],
        };
        let text = serialize(&graph);
        let back = parse(&text).unwrap();
        assert_eq!(back.filters.len(), 2);
        let (join, first) = &back.filters[0];
        assert_eq!(*join, Join::Chain);
        assert_eq!(first.instance.as_deref(), Some("t"));
        assert_eq!(
            first.args,
            graph.filters[0]
                .1
                .args
                .iter()
                .map(|(k, v)| RawArg::Keyed(k.clone(), v.clone()))
                .collect::<Vec<_>>()
        );
        assert_eq!(back.filters[1].0, Join::Graph);
    }
}
