//! The log itself: `status`, `streams`, `events`, and the read models' `projections`.

use std::io::Write;

use anyhow::Context;
use std::time::Instant;

use hedgehog::config::{self};
use hedgehog_projections::Projector;
use hedgehog_runtime::time::format_time;
use hedgehog_store::{redact_url, RecordedEvent, Store, StreamId};
use indicatif::{ProgressBar, ProgressStyle};

use super::args::*;

/// `status`: the store, its size and its last event.
pub async fn status(
    out: &mut impl Write,
    store: &Store,
    config: &config::Config,
) -> anyhow::Result<()> {
    let head = store.head_position().await?;
    let streams = store.streams().await?;
    writeln!(
        out,
        "store:     {} ({})",
        redact_url(&config.database_url),
        store.backend_name()
    )?;
    writeln!(out, "events:    {head}")?;
    writeln!(out, "streams:   {}", streams.len())?;
    let sealed = store.sealed().await?;
    if sealed.segments > 0 {
        writeln!(
            out,
            "sealed:    {} trades in {} segments ({:.1} MB)",
            sealed.trades,
            sealed.segments,
            sealed.bytes as f64 / 1e6
        )?;
    }
    if head > 0 {
        let last = store.read_all(head, 1).await?;
        if let Some(e) = last.first() {
            writeln!(
                out,
                "last:      #{} {} on {} (recorded at {} ms)",
                e.position,
                e.event.event_type(),
                e.stream_id,
                e.recorded_at
            )?;
        }
    }
    Ok(())
}

/// `streams`: every stream and its version.
pub async fn streams(out: &mut impl Write, store: &Store) -> anyhow::Result<()> {
    writeln!(out, "{:<40} {:>12}", "STREAM", "VERSION")?;
    for (stream, version) in store.streams().await? {
        writeln!(out, "{:<40} {:>12}", stream.as_str(), version)?;
    }
    Ok(())
}

/// `events`: a page of the log or of one stream, with who caused each event.
pub async fn events(
    out: &mut impl Write,
    store: &Store,
    stream: Option<String>,
    from: i64,
    limit: i64,
    format: Format,
) -> anyhow::Result<()> {
    let events = match &stream {
        Some(name) => {
            let id = StreamId::new(name).context("--stream")?;
            store.read_stream(&id, from, limit).await?
        }
        None => store.read_all(from, limit).await?,
    };
    if matches!(format, Format::Table) {
        writeln!(
            out,
            "{:>10}  {:<24} {:>8}  {:<24} {:<32} PAYLOAD",
            "POSITION", "STREAM", "VERSION", "TYPE", "BY"
        )?;
    }
    for e in &events {
        print_event(out, e, format)?;
    }
    Ok(())
}

/// `projections status` and `projections rebuild`.
pub async fn projections(
    out: &mut impl Write,
    store: &Store,
    what: ProjectionsCommandArg,
) -> anyhow::Result<()> {
    match what {
        ProjectionsCommandArg::Status {
            format: Format::Json,
        } => {
            let status = Projector::status(store).await?;
            writeln!(out, "{}", serde_json::to_string_pretty(&status)?)?;
        }
        ProjectionsCommandArg::Status {
            format: Format::Table,
        } => {
            writeln!(
                out,
                "{:<20} {:>12} {:>12} {:>10} {:>10}  UPDATED",
                "PROJECTION", "POSITION", "HEAD", "BEHIND", "REBUILDS"
            )?;
            for p in Projector::status(store).await? {
                writeln!(
                    out,
                    "{:<20} {:>12} {:>12} {:>10} {:>10}  {}",
                    p.name,
                    p.position,
                    p.head,
                    p.behind,
                    p.generation,
                    if p.updated_at == 0 {
                        "never".to_owned()
                    } else {
                        format_time(p.updated_at)
                    }
                )?;
            }
        }
        ProjectionsCommandArg::Rebuild { names } => {
            let models = hedgehog_projections::named(&names)?;
            let listed: Vec<&str> = models.iter().map(|m| m.name()).collect();
            let listed = listed.join(", ");
            let started = Instant::now();
            let bar = position_bar("rebuilding");
            let mut projector = Projector::with(store.clone(), models);
            let reached = projector
                .rebuild(|done, target| {
                    bar.set_length(u64::try_from(target).unwrap_or(0));
                    bar.set_position(u64::try_from(done).unwrap_or(0));
                })
                .await;
            bar.finish_and_clear();
            let reached = reached?;
            writeln!(
                out,
                "rebuilt {listed} from {reached} events ({:.2} s)",
                started.elapsed().as_secs_f64()
            )?;
        }
    }
    Ok(())
}

/// The time before which trades are `days` old: what `archive --older-than-days` and `run`'s
/// hourly seal cut at.
pub fn cut_of(days: u32) -> i64 {
    hedgehog_runtime::time::now().millis() - i64::from(days) * 86_400_000
}

/// `archive`: seals the market trades older than `--before` (or `--older-than-days`, or the
/// configuration's `archive.older_than_days`) and reports what it moved, in how long.
pub async fn archive(
    out: &mut impl Write,
    store: &Store,
    config: &config::Config,
    before: Option<i64>,
    older_than_days: Option<u32>,
    compact: bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let days = older_than_days.or(config.archive.older_than_days);
    let before = match (before, days) {
        (Some(before), _) => before,
        (None, Some(days)) => cut_of(days),
        (None, None) => anyhow::bail!(
            "say which trades to seal: --before TIME, --older-than-days N, or archive.older_than_days in the configuration"
        ),
    };
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("sealing {spinner} {pos} trades ({per_sec})") {
        bar.set_style(style);
    }
    let sealed = store
        .seal(before, |so_far| bar.set_position(so_far.trades))
        .await;
    bar.finish_and_clear();
    let sealed = sealed.context("cannot seal the market trades")?;
    if compact {
        store
            .compact()
            .await
            .context("cannot compact the database")?;
    }
    let per_trade = if sealed.trades > 0 {
        format!(
            ", {:.1} bytes a trade",
            sealed.bytes as f64 / sealed.trades as f64
        )
    } else {
        String::new()
    };
    writeln!(
        out,
        "sealed {} trades before {} into {} segments ({:.1} MB{per_trade}){} in {:.2} s",
        sealed.trades,
        format_time(before),
        sealed.segments,
        sealed.bytes as f64 / 1e6,
        if compact { ", compacted," } else { "" },
        started.elapsed().as_secs_f64()
    )?;
    Ok(())
}

pub fn print_event(out: &mut impl Write, e: &RecordedEvent, format: Format) -> anyhow::Result<()> {
    let payload = e.event.encode()?;
    match format {
        Format::Table => writeln!(
            out,
            "{:>10}  {:<24} {:>8}  {:<24} {:<32} {}",
            e.position,
            e.stream_id.as_str(),
            e.stream_version,
            e.event.event_type(),
            hedgehog_engine::actor::describe(&e.metadata),
            payload
        )?,
        Format::Json => {
            let line = serde_json::json!({
                "position": e.position,
                "event_id": e.event_id,
                "stream_id": e.stream_id.as_str(),
                "stream_version": e.stream_version,
                "recorded_at": e.recorded_at,
                "correlation_id": e.correlation_id,
                "causation_id": e.causation_id,
                "metadata": e.metadata,
                "event": serde_json::from_str::<serde_json::Value>(&payload)?,
            });
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}

/// A bar over log positions, drawn on stderr only when it is a terminal.
pub fn position_bar(what: &str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template(&format!(
        "{what} [{{bar:40}}] {{pos}}/{{len}} events ({{per_sec}}, eta {{eta}})"
    )) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Projects whatever the read models have not seen yet, with a bar when that takes a while.
pub async fn catch_up(store: &Store) -> anyhow::Result<()> {
    let bar = position_bar("projecting");
    let mut projector = Projector::new(store.clone());
    let result = projector
        .catch_up_with(|done, target| {
            bar.set_length(u64::try_from(target).unwrap_or(0));
            bar.set_position(u64::try_from(done).unwrap_or(0));
        })
        .await;
    bar.finish_and_clear();
    result.context("cannot bring the read models up to date")?;
    Ok(())
}
