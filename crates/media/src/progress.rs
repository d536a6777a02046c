//! Reader for `ffmpeg -progress pipe:1`: blocks of `key=value` lines, each
//! ending with `progress=continue` or `progress=end`.

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProgressSample {
    pub frame: Option<u64>,
    pub fps: Option<f64>,
    /// Output position in microseconds.
    pub out_time_us: Option<i64>,
    /// Speed as a multiple of real time (`1.5x` -> 1.5).
    pub speed: Option<f64>,
    pub total_size: Option<u64>,
    /// True on the block that ends with `progress=end`.
    pub end: bool,
}

#[derive(Debug, Default)]
pub struct ProgressReader {
    current: ProgressSample,
}

impl ProgressReader {
    /// Feed one line; returns a sample when a block completes.
    pub fn line(&mut self, line: &str) -> Option<ProgressSample> {
        let (key, value) = line.trim().split_once('=')?;
        let value = value.trim();
        match key {
            "frame" => self.current.frame = value.parse().ok(),
            "fps" => self.current.fps = value.parse().ok(),
            // out_time_ms is microseconds too (a historical misnomer in ffmpeg).
            "out_time_us" | "out_time_ms" => {
                if let Ok(us) = value.parse::<i64>() {
                    self.current.out_time_us = Some(us);
                }
            }
            "speed" => self.current.speed = value.trim_end_matches('x').trim().parse().ok(),
            "total_size" => self.current.total_size = value.parse().ok(),
            "progress" => {
                let mut sample = std::mem::take(&mut self.current);
                sample.end = value == "end";
                return Some(sample);
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_real_block() {
        let text = include_str!("../tests/fixtures/progress.txt");
        let mut reader = ProgressReader::default();
        let samples: Vec<_> = text.lines().filter_map(|l| reader.line(l)).collect();
        assert_eq!(samples.len(), 4);
        assert_eq!(samples[0].speed, None, "N/A speed");
        assert_eq!(samples[1].frame, Some(86));
        assert_eq!(samples[1].out_time_us, Some(1_480_000));
        assert_eq!(samples[1].speed, Some(2.95));
        assert!(!samples[1].end);
        assert!(samples[3].end);
        assert_eq!(samples[3].frame, Some(200));
    }
}
