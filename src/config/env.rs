//! `S3SP_…` environment variables laid over the parsed file, before it is checked.

/// Environment variables with this prefix override settings of the file.
pub const ENV_PREFIX: &str = "S3SP_";

/// Sets the setting `name` (`S3SP_A__B__C`) to `value` in the parsed file.
pub(super) fn apply_override(
    table: &mut toml::Table,
    name: &str,
    value: &str,
) -> Result<(), String> {
    let path: Vec<String> = name
        .strip_prefix(ENV_PREFIX)
        .unwrap_or(name)
        .split("__")
        .map(str::to_ascii_lowercase)
        .collect();
    if path.iter().any(String::is_empty) {
        return Err("not of the form S3SP_SECTION__SETTING".to_string());
    }
    let value = match format!("v = {value}").parse::<toml::Table>() {
        Ok(mut parsed) => parsed
            .remove("v")
            .unwrap_or(toml::Value::String(value.to_string())),
        Err(_) => toml::Value::String(value.to_string()),
    };
    let (last, parents) = path.split_last().ok_or("names no setting")?;
    let mut current = table;
    let mut segments = parents.iter();
    while let Some(segment) = segments.next() {
        let entry = current
            .entry(segment.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match entry {
            toml::Value::Table(next) => next,
            toml::Value::Array(items) => {
                let selector = segments
                    .next()
                    .ok_or_else(|| format!("`{segment}` is a list: name an entry of it"))?;
                select_entry(items, selector)
                    .ok_or_else(|| format!("no [[{segment}]] entry is named `{selector}`"))?
            }
            _ => return Err(format!("`{segment}` is not a section")),
        };
    }
    current.insert(last.clone(), value);
    Ok(())
}

/// The entry of a `[[integration]]`/`[[client]]` list named (or numbered) by `selector`.
fn select_entry<'a>(items: &'a mut [toml::Value], selector: &str) -> Option<&'a mut toml::Table> {
    let normalise = |text: &str| -> String {
        text.chars()
            .map(|c| {
                if c == '-' {
                    '_'
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    };
    let position = items.iter().position(|item| {
        ["name", "access_key_id"].iter().any(|field| {
            item.get(field)
                .and_then(toml::Value::as_str)
                .is_some_and(|n| normalise(n) == normalise(selector))
        })
    });
    let index = position.or_else(|| selector.parse::<usize>().ok())?;
    items.get_mut(index)?.as_table_mut()
}
