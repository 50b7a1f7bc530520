//! libphonenumber's metadata as the `phonenumber` crate ships it (0.3.10, metadata 9.0.33),
//! read from its database when this crate is built (see `build.rs`): what the lookup needs
//! of it, as statics, so that nothing is parsed when a program starts.

/// A calling code and its regions, in the database's order (the main region first).
pub(crate) struct CodeData {
    pub(crate) code: u16,
    pub(crate) regions: &'static [RegionData],
}

/// A region (`001` for a non-geographic entity) and its descriptors.
pub(crate) struct RegionData {
    pub(crate) id: &'static str,
    /// Where its calling code is shared: the digits its national numbers start with.
    pub(crate) leading_digits: Option<&'static str>,
    pub(crate) general: Desc,
    pub(crate) premium_rate: Option<Desc>,
    pub(crate) toll_free: Option<Desc>,
    pub(crate) shared_cost: Option<Desc>,
    pub(crate) voip: Option<Desc>,
    pub(crate) personal_number: Option<Desc>,
    pub(crate) pager: Option<Desc>,
    pub(crate) uan: Option<Desc>,
    pub(crate) voicemail: Option<Desc>,
    pub(crate) fixed_line: Option<Desc>,
    pub(crate) mobile: Option<Desc>,
    /// The fixed-line and mobile patterns are the same text.
    pub(crate) same_fixed_and_mobile: bool,
}

/// A number descriptor: the pattern of its national numbers (to compile ignoring whitespace)
/// and their possible lengths (none: any).
#[derive(Clone, Copy)]
pub(crate) struct Desc {
    pub(crate) pattern: &'static str,
    pub(crate) lengths: &'static [u16],
}

include!(concat!(env!("OUT_DIR"), "/metadata.rs"));
