//! The request bodies of the built-in API, each as its route reads it and as the OpenAPI
//! document describes it ([`super::openapi`]).

use serde::Deserialize;

/// `POST /api/channels/:id/destinations`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateDestination {
    /// 1 to 64 letters, digits, '-' or '_' (not "preview").
    pub(crate) name: String,
    /// `rtmp://` or `rtmps://`, with the stream key, as the platform shows it.
    pub(crate) url: String,
    /// Default true.
    #[serde(default = "yes")]
    pub(crate) enabled: bool,
    /// The encoding profile it receives (`GET /api/profiles`). Default: the channel's `[output]`.
    #[serde(default)]
    pub(crate) profile: Option<String>,
    /// Recordings (`file://` URLs): minutes per file. Default 60.
    #[serde(default)]
    pub(crate) segment_minutes: Option<u32>,
    /// Recordings: GiB its files may take before the oldest are deleted. Default: no limit.
    #[serde(default)]
    pub(crate) max_total_gib: Option<f64>,
}

fn yes() -> bool {
    true
}

/// `PATCH /api/channels/:id/destinations/:name`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatchDestination {
    pub(crate) url: Option<String>,
    pub(crate) enabled: Option<bool>,
    /// A profile name, or `""` for the channel's `[output]`.
    pub(crate) profile: Option<String>,
    /// Recordings: minutes per file (1..=1440).
    pub(crate) segment_minutes: Option<u32>,
    /// Recordings: GiB its files may take before the oldest are deleted; `null` removes the
    /// limit (absent: unchanged).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<f64>)]
    pub(crate) max_total_gib: Option<Option<f64>>,
}

/// A field that may be absent (outer `None`) or `null` (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<f64>>, D::Error> {
    Option::<f64>::deserialize(d).map(Some)
}

/// `POST /api/channels/:id/fallback` `{"media": NAME | PATH | null}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FallbackBody {
    /// A media gallery name or a file path; null: the slate.
    pub(crate) media: Option<String>,
}

/// `POST /api/switch` and `POST /api/channels/:id/switch`.
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct SwitchBody {
    /// `live` or `fallback`.
    pub(crate) source: String,
    /// Replace the fallback media first: an image or video path.
    pub(crate) media: Option<String>,
    /// With `live`: the publish session to put on air (see `sessions` in the status); default
    /// the newest healthy one.
    pub(crate) session: Option<u64>,
}
