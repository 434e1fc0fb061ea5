//! Times as people write and read them; the engine itself only knows ms since the epoch.

/// Parses ms since the epoch, a date (`2024-08-08`, midnight UTC) or an RFC 3339 time.
pub fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let full = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_owned()
    };
    let time = humantime::parse_rfc3339_weak(&full).map_err(|e| {
        format!("{e}: give ms since the epoch, a date like 2024-08-08 or a time like 2024-08-08T10:00:00Z")
    })?;
    let ms = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| "times before 1970 are not supported".to_owned())?
        .as_millis();
    i64::try_from(ms).map_err(|_| "that time is too far in the future".to_owned())
}

/// A time for people: RFC 3339 in UTC with milliseconds.
pub fn format_time(ms: i64) -> String {
    match u64::try_from(ms) {
        Ok(ms) => humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
        )
        .to_string(),
        Err(_) => ms.to_string(),
    }
}

/// The wall clock in ms since the epoch, read at the edges only: the domain takes times as data.
pub fn now() -> hedgehog_domain::Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    hedgehog_domain::Timestamp(i64::try_from(ms).unwrap_or(i64::MAX))
}
