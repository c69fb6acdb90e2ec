//! Redaction of secrets for logs and API answers: stream keys and key-bearing URLs.

/// Shows only enough of a stream key to tell keys apart: its last 4 characters
/// (`live_123456_abcdef` → `…cdef`). Keys shorter than 12 characters are fully hidden as `…`
/// (4 shown of fewer than 12 would leave too little to guess).
pub fn key(k: &str) -> String {
    let chars: Vec<char> = k.chars().collect();
    if chars.len() < 12 {
        return "…".into();
    }
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("…{tail}")
}

/// Redacts the stream key (the last path segment), any user info and any query string of an
/// RTMP URL: `rtmp://live.twitch.tv/app/live_123_abcdef` → `rtmp://live.twitch.tv/app/live…cdef`.
pub fn url(u: &str) -> String {
    if u.starts_with("file://") {
        return u.to_string(); // a recording's path holds no secret
    }
    let (scheme, rest) = match u.split_once("://") {
        Some((s, r)) => (s, r),
        None => return key(u),
    };
    let (rest, had_query) = match rest.split_once('?') {
        Some((r, _)) => (r, true),
        None => (rest, false),
    };
    let (authority, path) = match rest.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (rest, None),
    };
    let host = match authority.rsplit_once('@') {
        Some((_, h)) => format!("…@{h}"),
        None => authority.to_string(),
    };
    let mut out = format!("{scheme}://{host}");
    if let Some(p) = path {
        let mut segs: Vec<String> = p.split('/').map(str::to_string).collect();
        if segs.len() >= 2
            && let Some(last) = segs.last_mut()
        {
            *last = key(last);
        }
        out.push('/');
        out.push_str(&segs.join("/"));
    }
    if had_query {
        out.push_str("?…");
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_keep_only_a_hint() {
        assert_eq!(super::key("live_123456_abcdef"), "…cdef");
        assert_eq!(super::key("short"), "…");
        assert_eq!(super::key("eleven-char"), "…");
        assert!(!super::key("my-secret-key").contains("secret"));
        assert!(!super::key("my-secret-key").contains("my"));
    }

    #[test]
    fn urls_hide_key_userinfo_and_query() {
        assert_eq!(
            super::url("rtmp://live.twitch.tv/app/live_123_abcdef"),
            "rtmp://live.twitch.tv/app/…cdef"
        );
        let r = super::url("rtmps://user:pass@host:443/app/sk_us_west_abcdefgh?token=zzz");
        assert!(
            !r.contains("pass") && !r.contains("zzz") && !r.contains("sk_us_west_abcd"),
            "{r}"
        );
        assert_eq!(super::url("rtmp://host/app"), "rtmp://host/app");
    }
}
