//! Script route patterns and request paths: declaring, matching and percent-decoding.
//! Input: method, pattern and path separated by newlines.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onair_fuzz::routes::{Route, RouteTable, percent_decode};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, '\n');
    let (Some(method), Some(pattern), Some(path)) = (parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let _ = percent_decode(path);
    if let Ok(route) = Route::new(method, pattern, "fuzz.lua", 1, false) {
        let _ = route.clashes(&route);
        let mut table = RouteTable::default();
        table.routes.push(route);
        let _ = table.find(method, path);
    }
});
