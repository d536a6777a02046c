//! The FFmpeg nommer's command line, in the seed's shape:
//!
//! ```text
//! ffmpeg -y -nostdin -progress pipe:1 -nostats [global pairs] [infile pairs]
//!        -protocol_whitelist file,pipe -format_whitelist DEMUXERS -i IN [outfile pairs]
//!        [-f FMT] [-movflags +faststart] -passlogfile SCRATCH/pass OUT
//! ```
//!
//! `-y` first and the pairs in order, as the seed built them, from passes the
//! option check has already made canonical. The nommer's own global flags
//! follow `-y`, then the job's. The input may open only files, and only with
//! an allowed demuxer, whatever its content says. `-f` (only when the job gave
//! none), faststart (for `move_atom_to_front`) and `-passlogfile` close the
//! output options. With two passes, pass 1 writes to the null device. No
//! shell ever sees these.

use nommer_model::options::{OptionPair, Pass};
use std::path::Path;

pub const NULL_OUTPUT: &str = "/dev/null";

pub struct PassPlan<'a> {
    pub ffmpeg: &'a str,
    pub pass: &'a Pass,
    /// 0-based index of this pass.
    pub index: usize,
    pub pass_count: usize,
    pub input: &'a Path,
    pub output: &'a Path,
    pub scratch: &'a Path,
    /// The muxer to name when the job gave no `-f`.
    pub inferred_format: Option<&'a str>,
}

fn push_pairs(argv: &mut Vec<String>, pairs: &[OptionPair]) {
    for pair in pairs {
        argv.push(format!("-{}", pair.flag));
        if let Some(value) = pair.value.render() {
            argv.push(value);
        }
    }
}

/// What every input a job names may open: files (and pipes), through the
/// allowed demuxers only, so a source that is itself a playlist or a concat
/// script cannot make ffmpeg read anything else.
pub fn input_whitelist() -> [String; 4] {
    [
        "-protocol_whitelist".into(),
        "file,pipe".into(),
        "-format_whitelist".into(),
        nommer_model::options::formats::demuxer_whitelist(),
    ]
}

/// A chunked job's join: the chunks `list` names (an ffconcat file of
/// names beside it, which the demuxer's safe mode requires) joined without
/// re-encoding, the audio encoded once muxed beside them, into `muxer`.
pub fn concat_argv(
    ffmpeg: &str,
    list: &Path,
    audio: Option<&Path>,
    muxer: &str,
    faststart: bool,
    output: &Path,
) -> Vec<String> {
    let mut argv: Vec<String> = [ffmpeg, "-y", "-nostdin", "-v", "error", "-f", "concat"]
        .map(String::from)
        .to_vec();
    let mut whitelist = input_whitelist();
    whitelist[3] = format!("concat,{}", whitelist[3]);
    argv.extend(whitelist);
    argv.extend(["-i".into(), list.display().to_string()]);
    if let Some(audio) = audio {
        argv.extend(input_whitelist());
        argv.extend(["-i".into(), audio.display().to_string()]);
    }
    argv.extend(["-map".into(), "0:v:0".into()]);
    if audio.is_some() {
        argv.extend(["-map".into(), "1:a:0".into()]);
    }
    argv.extend(["-c".into(), "copy".into()]);
    if faststart {
        argv.extend(["-movflags".into(), "+faststart".into()]);
    }
    argv.extend(["-f".into(), muxer.into(), output.display().to_string()]);
    argv
}

impl PassPlan<'_> {
    /// Whether this pass writes the job's result (the last of two, or the only one).
    pub fn writes_result(&self) -> bool {
        self.pass_count == 1 || self.index == 1
    }

    pub fn argv(&self) -> Vec<String> {
        let mut argv = vec![
            self.ffmpeg.to_string(),
            "-y".into(),
            "-nostdin".into(),
            "-progress".into(),
            "pipe:1".into(),
            "-nostats".into(),
        ];
        push_pairs(&mut argv, &self.pass.global_options);
        push_pairs(&mut argv, &self.pass.infile_options);
        argv.extend(input_whitelist());
        argv.push("-i".into());
        argv.push(self.input.display().to_string());
        let mut outfile = self.pass.outfile_options.clone();
        let faststart = self.pass.move_atom_to_front && self.writes_result();
        if faststart {
            match outfile.iter_mut().find(|p| p.base() == "movflags") {
                Some(pair) => {
                    let current = pair.value.render().unwrap_or_default();
                    pair.value =
                        nommer_model::options::OptValue::Str(format!("{current}+faststart"));
                }
                None => outfile.push(OptionPair::new(
                    "movflags",
                    nommer_model::options::OptValue::Str("+faststart".into()),
                )),
            }
        }
        push_pairs(&mut argv, &outfile);
        if self.pass.output_format().is_none() {
            if let Some(format) = self.inferred_format {
                argv.push("-f".into());
                argv.push(format.into());
            }
        }
        argv.push("-passlogfile".into());
        argv.push(self.scratch.join("pass").display().to_string());
        if self.writes_result() {
            argv.push(self.output.display().to_string());
        } else {
            argv.push(NULL_OUTPUT.into());
        }
        argv
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nommer_model::options::{check_passes, modernize, parse_passes, Allowlist};
    use serde_json::json;
    use std::path::PathBuf;

    const ADDED: [&str; 4] = ["-nostdin", "-progress", "pipe:1", "-nostats"];

    /// The seed's command with the nommer's additions put in their places.
    fn expected(seed: &str, scratch: &str) -> Vec<String> {
        let mut words: Vec<String> = seed.split(' ').map(String::from).collect();
        for (i, flag) in ADDED.iter().enumerate() {
            words.insert(2 + i, flag.to_string());
        }
        let input = words.iter().position(|w| w == "-i").unwrap();
        for (i, word) in input_whitelist().into_iter().enumerate() {
            words.insert(input + i, word);
        }
        let out = words.pop().unwrap();
        words.push("-passlogfile".into());
        words.push(format!("{scratch}/pass"));
        words.push(out);
        words
    }

    fn plans(options: serde_json::Value) -> Vec<Vec<String>> {
        let mut passes = parse_passes(&options).unwrap();
        modernize(&mut passes);
        let passes = check_passes(passes, Allowlist::builtin()).unwrap();
        let (input, output, scratch) = (
            PathBuf::from("IN"),
            PathBuf::from("OUT"),
            PathBuf::from("/s"),
        );
        (0..passes.len())
            .map(|index| {
                PassPlan {
                    ffmpeg: "ffmpeg",
                    pass: &passes[index],
                    index,
                    pass_count: passes.len(),
                    input: &input,
                    output: &output,
                    scratch: &scratch,
                    inferred_format: Some("mp4"),
                }
                .argv()
            })
            .collect()
    }

    #[test]
    fn the_docs_example_first_pass() {
        let argv = plans(json!([
            {"infile_options": [], "outfile_options": [["threads", 0], ["vcodec", "libx264"], ["preset", "medium"], ["profile", "baseline"], ["b", "400k"], ["vf", "yadif,scale=640:-1"], ["pass", "1"], ["f", "mp4"], ["an", null]]},
            {"outfile_options": [["threads", 0], ["pass", "2"], ["f", "mp4"]]}
        ]));
        // The graph goes to ffmpeg re-serialised, every argument named.
        let seed = "ffmpeg -y -i IN -threads 0 -vcodec libx264 -preset medium -profile baseline -b 400k -vf yadif,scale=w=640:h=-1 -pass 1 -f mp4 -an /dev/null";
        assert_eq!(argv[0], expected(seed, "/s"));
    }

    #[test]
    fn web_medium_both_passes_and_faststart() {
        let argv = plans(
            json!([{"outfile_options": [["vcodec", "libx264"], ["preset", "medium"], ["vprofile", "baseline"], ["b", "400k"], ["bufsize", "400k"], ["vf", "yadif,scale='640:trunc(ow/a/2)*2'"], ["pass", "1"], ["f", "mp4"], ["keyint_min", "60"], ["g", "120"], ["an", null]]}, {"outfile_options": [["vcodec", "libx264"], ["preset", "medium"], ["vprofile", "baseline"], ["b", "400k"], ["bufsize", "400k"], ["vf", "yadif,scale='640:trunc(ow/a/2)*2'"], ["pass", "2"], ["acodec", "libfaac"], ["ab", "128k"], ["async", "480"], ["keyint_min", "60"], ["g", "120"], ["f", "mp4"]], "move_atom_to_front": true}]),
        );
        // The seed's quoted scale is two positional arguments to FFmpeg: w and h.
        let pass1 = "ffmpeg -y -i IN -vcodec libx264 -preset medium -vprofile baseline -b 400k -bufsize 400k -vf yadif,scale=w=640:h=trunc(ow/a/2)*2 -pass 1 -f mp4 -keyint_min 60 -g 120 -an /dev/null";
        assert_eq!(argv[0], expected(pass1, "/s"));
        // Pass 2, with faststart (the seed's qtfaststart step) among the output
        // options, libfaac replaced by the native aac encoder, and -async, a
        // global option in FFmpeg, before the input.
        let pass2 = "ffmpeg -y -async 480 -i IN -vcodec libx264 -preset medium -vprofile baseline -b 400k -bufsize 400k -vf yadif,scale=w=640:h=trunc(ow/a/2)*2 -pass 2 -acodec aac -ab 128k -keyint_min 60 -g 120 -f mp4 -movflags +faststart OUT";
        assert_eq!(argv[1], expected(pass2, "/s"));
    }

    #[test]
    fn infile_options_go_before_input_and_values_render_like_python() {
        let argv = plans(
            json!([{"infile_options": [["ss", "10"]], "outfile_options": [["threads", 0], ["an", null], ["frames:v", 250], ["qscale:a", 2.5]]}]),
        );
        let seed = "ffmpeg -y -ss 10 -i IN -threads 0 -an -frames:v 250 -qscale:a 2.5 -f mp4 OUT";
        assert_eq!(argv[0], expected(seed, "/s"));
    }

    #[test]
    fn global_flags_go_before_the_input_wherever_they_stood() {
        let argv = plans(
            json!([{"outfile_options": [["c:v", "libx264"], ["filter_complex", "[0:v]scale=320:-2[v]"], ["map", "[v]"]]}]),
        );
        let seed = "ffmpeg -y -filter_complex [0:v]scale=w=320:h=-2[v] -i IN -c:v libx264 -map [v] -f mp4 OUT";
        assert_eq!(argv[0], expected(seed, "/s"));
    }
}
