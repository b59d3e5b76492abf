//! UEFI event data TDVF measures: variables, boot options, action strings.

use sha2::{Digest, Sha384};

use super::tdvf::guid_bytes;

/// EFI_GLOBAL_VARIABLE `8be4df61-93ca-11d2-aa0d-00e098032b8c`.
pub(crate) const EFI_GLOBAL_VARIABLE: [u8; 16] = guid_bytes(
    0x8be4_df61,
    0x93ca,
    0x11d2,
    [0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c],
);

/// EFI_IMAGE_SECURITY_DATABASE_GUID `d719b2cb-3d3a-4596-a3bc-dad00e67656f`.
pub(crate) const EFI_IMAGE_SECURITY_DATABASE: [u8; 16] = guid_bytes(
    0xd719_b2cb,
    0x3d3a,
    0x4596,
    [0xa3, 0xbc, 0xda, 0xd0, 0x0e, 0x67, 0x65, 0x6f],
);

/// FvNameGuid of DXEFV in `OvmfPkg/IntelTdx/IntelTdxX64.fdf` (edk2-stable202502):
/// `7cb8bdc9-f8eb-4f34-aaea-3ee4af6516a1`. UiApp lives in that volume.
pub(crate) const INTEL_TDX_DXEFV_NAME: [u8; 16] = guid_bytes(
    0x7cb8_bdc9,
    0xf8eb,
    0x4f34,
    [0xaa, 0xea, 0x3e, 0xe4, 0xaf, 0x65, 0x16, 0xa1],
);

/// UiApp FILE_GUID `462caa21-7614-4503-836e-8ab6f4662331` (`MdeModulePkg/Application/UiApp`,
/// also `PcdBootManagerMenuFile` in IntelTdxX64.dsc).
pub(crate) const UI_APP_FILE: [u8; 16] = guid_bytes(
    0x462c_aa21,
    0x7614,
    0x4503,
    [0x83, 0x6e, 0x8a, 0xb6, 0xf4, 0x66, 0x23, 0x31],
);

pub(crate) fn sha384(data: &[u8]) -> [u8; 48] {
    Sha384::digest(data).into()
}

/// UTF-16LE code units of `s`, without a terminator.
pub(crate) fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// UEFI_VARIABLE_DATA (TCG PC Client PFP spec, §10.2.6 / edk2 `UEFI_VARIABLE_DATA`):
/// VariableName GUID, UnicodeNameLength (u64, in CHAR16), VariableDataLength (u64),
/// UnicodeName (no terminator), VariableData.
pub(crate) fn uefi_variable_data(vendor: &[u8; 16], name: &str, data: &[u8]) -> Vec<u8> {
    let name16 = utf16le(name);
    let mut v = Vec::with_capacity(32 + name16.len() + data.len());
    v.extend_from_slice(vendor);
    v.extend_from_slice(&((name16.len() / 2) as u64).to_le_bytes());
    v.extend_from_slice(&(data.len() as u64).to_le_bytes());
    v.extend_from_slice(&name16);
    v.extend_from_slice(data);
    v
}

/// Digest of an EV_EFI_VARIABLE_DRIVER_CONFIG event: TdTcg2Dxe `MeasureVariable` hashes the
/// whole UEFI_VARIABLE_DATA. An absent variable is measured with no data.
pub(crate) fn driver_config_variable_digest(vendor: &[u8; 16], name: &str) -> [u8; 48] {
    sha384(&uefi_variable_data(vendor, name, &[]))
}

/// EFI_LOAD_OPTION of the Boot Manager Menu (UiApp) boot option that edk2's
/// `BmRegisterBootManagerMenu` creates (`MdeModulePkg/Library/UefiBootManagerLib/BmBoot.c`):
/// Attributes LOAD_OPTION_CATEGORY_APP | LOAD_OPTION_HIDDEN | LOAD_OPTION_ACTIVE (0x109),
/// description "UiApp" (the file's UI section), device path
/// `Fv(DXEFV name)/FvFile(UiApp)/End`, no optional data.
pub(crate) fn ui_app_load_option() -> Vec<u8> {
    let mut path = Vec::with_capacity(44);
    // MEDIA_DEVICE_PATH (4) / MEDIA_PIWG_FW_VOL_DP (7), length 20.
    path.extend_from_slice(&[0x04, 0x07, 20, 0]);
    path.extend_from_slice(&INTEL_TDX_DXEFV_NAME);
    // MEDIA_DEVICE_PATH (4) / MEDIA_PIWG_FW_FILE_DP (6), length 20.
    path.extend_from_slice(&[0x04, 0x06, 20, 0]);
    path.extend_from_slice(&UI_APP_FILE);
    // END_DEVICE_PATH_TYPE (0x7f) / END_ENTIRE_DEVICE_PATH_SUBTYPE (0xff), length 4.
    path.extend_from_slice(&[0x7f, 0xff, 4, 0]);

    let mut option = Vec::with_capacity(6 + 12 + path.len());
    option.extend_from_slice(&0x0000_0109u32.to_le_bytes());
    option.extend_from_slice(&(path.len() as u16).to_le_bytes());
    option.extend_from_slice(&utf16le("UiApp\0"));
    option.extend_from_slice(&path);
    option
}
