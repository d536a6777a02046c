//! The files an HLS playlist or a DASH manifest names, read from the text
//! the muxer wrote: what the quality check looks for before a ladder is
//! published, and what a player will ask for.

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// Every URI an HLS playlist names: a master's media playlists and
/// renditions (`EXT-X-MEDIA`), a media playlist's init (`EXT-X-MAP`) and
/// segments, in order.
pub fn hls_references(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() {
            continue;
        }
        if let Some(tag) = line.strip_prefix('#') {
            if tag.starts_with("EXT-X-MAP:") || tag.starts_with("EXT-X-MEDIA:") {
                if let Some(uri) = quoted_attribute(tag, "URI") {
                    names.push(uri);
                }
            }
            continue;
        }
        names.push(line.to_string());
    }
    names
}

/// A media playlist's length: the sum of its `EXTINF` durations.
pub fn hls_duration(text: &str) -> f64 {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("#EXTINF:"))
        .filter_map(|rest| rest.split(',').next()?.trim().parse::<f64>().ok())
        .sum()
}

fn quoted_attribute(tag: &str, key: &str) -> Option<String> {
    let start = tag.find(&format!("{key}=\""))? + key.len() + 2;
    let end = tag[start..].find('"')? + start;
    Some(tag[start..end].to_string())
}

/// One DASH representation's files.
#[derive(Debug, Clone, PartialEq)]
pub struct Representation {
    pub id: String,
    pub init: Option<String>,
    pub segments: Vec<String>,
    /// The timeline's length in seconds.
    pub duration: f64,
}

#[derive(Debug, Clone, Default)]
struct Template {
    init: Option<String>,
    media: Option<String>,
    start_number: u64,
    timescale: u64,
    /// `(t, d, r)` of each `S`, as written.
    timeline: Vec<(Option<u64>, u64, i64)>,
}

fn attribute(element: &BytesStart<'_>, key: &str) -> Option<String> {
    element
        .try_get_attribute(key)
        .ok()
        .flatten()
        .and_then(|a| a.unescape_value().ok().map(|v| v.to_string()))
}

/// Every representation of a DASH MPD with `SegmentTemplate` and
/// `SegmentTimeline` (what FFmpeg's dash muxer writes), its names expanded.
pub fn dash_references(text: &str) -> Result<Vec<Representation>, String> {
    let mut reader = Reader::from_str(text);
    let mut representations = Vec::new();
    // The adaptation set's template, which its representations inherit.
    let mut set_template: Option<Template> = None;
    let mut current: Option<(String, Template)> = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("the MPD is not XML: {e}"))?;
        match event {
            Event::Eof => break,
            Event::Start(element) | Event::Empty(element) => match element.local_name().as_ref() {
                b"AdaptationSet" => set_template = None,
                b"Representation" => {
                    let id = attribute(&element, "id").unwrap_or_default();
                    let template = set_template.clone().unwrap_or_default();
                    current = Some((id, template));
                }
                b"SegmentTemplate" => {
                    let template = Template {
                        init: attribute(&element, "initialization"),
                        media: attribute(&element, "media"),
                        start_number: attribute(&element, "startNumber")
                            .and_then(|n| n.parse().ok())
                            .unwrap_or(1),
                        timescale: attribute(&element, "timescale")
                            .and_then(|n| n.parse().ok())
                            .filter(|n| *n > 0)
                            .unwrap_or(1),
                        timeline: Vec::new(),
                    };
                    match current.as_mut() {
                        Some((_, own)) => *own = template,
                        None => set_template = Some(template),
                    }
                }
                b"S" => {
                    let t = attribute(&element, "t").and_then(|v| v.parse().ok());
                    let d = attribute(&element, "d")
                        .and_then(|v| v.parse().ok())
                        .ok_or("an S element without a duration")?;
                    let r = attribute(&element, "r")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let target = match current.as_mut() {
                        Some((_, own)) => own,
                        None => set_template.get_or_insert_with(Template::default),
                    };
                    target.timeline.push((t, d, r));
                }
                _ => {}
            },
            Event::End(element) if element.local_name().as_ref() == b"Representation" => {
                if let Some((id, template)) = current.take() {
                    representations.push(expand(&id, &template)?);
                }
            }
            _ => {}
        }
    }
    Ok(representations)
}

fn expand(id: &str, template: &Template) -> Result<Representation, String> {
    let Some(media) = &template.media else {
        return Err(format!("representation {id} has no SegmentTemplate media"));
    };
    let mut segments = Vec::new();
    let mut number = template.start_number;
    let mut time = 0u64;
    let mut ticks = 0u64;
    for &(t, d, r) in &template.timeline {
        if let Some(t) = t {
            time = t;
        }
        for _ in 0..=r.max(0) {
            segments.push(fill(media, id, number, time)?);
            number += 1;
            time += d;
            ticks += d;
        }
    }
    Ok(Representation {
        id: id.to_string(),
        init: template
            .init
            .as_deref()
            .map(|init| fill(init, id, number, 0))
            .transpose()?,
        segments,
        duration: ticks as f64 / template.timescale.max(1) as f64,
    })
}

/// A template with `$RepresentationID$`, `$Number$` / `$Number%0Nd$` and
/// `$Time$` filled in.
fn fill(template: &str, id: &str, number: u64, time: u64) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after
            .find('$')
            .ok_or_else(|| format!("an unclosed $ in \"{template}\""))?;
        let (name, width) = match after[..end].split_once("%0") {
            Some((name, width)) => (
                name,
                width
                    .trim_end_matches('d')
                    .parse::<usize>()
                    .map_err(|_| format!("a bad width in \"{template}\""))?,
            ),
            None => (&after[..end], 0),
        };
        match name {
            "" => out.push('$'),
            "RepresentationID" => out.push_str(id),
            "Number" => out.push_str(&format!("{number:0width$}")),
            "Time" => out.push_str(&format!("{time:0width$}")),
            other => return Err(format!("an unknown identifier ${other}$ in \"{template}\"")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hls_master_and_media_playlists() {
        let master = "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aud\",NAME=\"audio\",URI=\"stream_audio.m3u8\"\n#EXT-X-STREAM-INF:BANDWIDTH=1\nstream_720p.m3u8\n\n";
        assert_eq!(
            hls_references(master),
            ["stream_audio.m3u8", "stream_720p.m3u8"]
        );
        let media = "#EXTM3U\n#EXT-X-MAP:URI=\"init_0.mp4\"\n#EXTINF:2.0,\nseg_720p_00000.m4s\n#EXTINF:1.0,\nseg_720p_00001.m4s\n#EXT-X-ENDLIST\n";
        assert_eq!(
            hls_references(media),
            ["init_0.mp4", "seg_720p_00000.m4s", "seg_720p_00001.m4s"]
        );
        assert!((hls_duration(media) - 3.0).abs() < 1e-9);
    }

    #[test]
    fn dash_timelines_expand_to_every_segment() {
        let mpd = r#"<?xml version="1.0"?><MPD><Period><AdaptationSet id="0">
            <Representation id="0"><SegmentTemplate timescale="12800" initialization="init_$RepresentationID$.m4s" media="seg_$RepresentationID$_$Number%05d$.m4s" startNumber="1">
              <SegmentTimeline><S t="0" d="25600" r="2" /><S d="12800" /></SegmentTimeline></SegmentTemplate></Representation>
            <Representation id="1"><SegmentTemplate initialization="i$RepresentationID$.mp4" media="t$Time$.m4s">
              <SegmentTimeline><S t="10" d="5" r="1"/></SegmentTimeline></SegmentTemplate></Representation>
            </AdaptationSet></Period></MPD>"#;
        let reps = dash_references(mpd).unwrap();
        assert_eq!(reps.len(), 2);
        assert_eq!(reps[0].init.as_deref(), Some("init_0.m4s"));
        assert_eq!(
            reps[0].segments,
            [
                "seg_0_00001.m4s",
                "seg_0_00002.m4s",
                "seg_0_00003.m4s",
                "seg_0_00004.m4s"
            ]
        );
        assert_eq!(reps[1].segments, ["t10.m4s", "t15.m4s"]);
        assert!((reps[0].duration - 7.0).abs() < 1e-9);
        assert!(dash_references("<MPD><Period><AdaptationSet><Representation id=\"0\"></Representation></AdaptationSet></Period></MPD>").is_err());
    }
}
