//! The state service's database.

use super::Report;

pub(super) async fn database(report: &mut Report, url: Option<&str>) {
    const NAME: &str = "state database";
    let Some(url) = url.filter(|u| !u.is_empty()) else {
        report.warn(
            NAME,
            "DATABASE_URL is not set here: moat-state uses its own setting (default sqlite://moat-state.db)",
            "export DATABASE_URL as moat-state sees it (sqlite://… or postgres://…) to check it",
        );
        return;
    };
    let scheme = url.split(':').next().unwrap_or_default();
    let result: Result<(), String> = async {
        if scheme.starts_with("postgres") {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(url).await.map_err(|e| e.to_string())?;
            let mut tx = conn.begin().await.map_err(|e| e.to_string())?;
            sqlx::query("CREATE TABLE moat_doctor_probe (x INT)")
                .execute(&mut *tx)
                .await
                .map_err(|e| format!("cannot write: {e}"))?;
            tx.rollback().await.map_err(|e| e.to_string())
        } else if scheme == "sqlite" {
            use sqlx::Connection;
            let mut conn = sqlx::SqliteConnection::connect(url).await.map_err(|e| e.to_string())?;
            // Takes the write lock without changing anything.
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut conn)
                .await
                .map_err(|e| format!("cannot write: {e}"))?;
            sqlx::query("ROLLBACK")
                .execute(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            Ok(())
        } else {
            Err(format!("scheme {scheme:?} is neither sqlite nor postgres"))
        }
    }
    .await;
    let shown = redact(url);
    match result {
        Ok(()) => report.pass(NAME, format!("{shown} is writable")),
        Err(error) => report.fail(
            NAME,
            format!("{shown}: {error}"),
            "check the server, the credentials and that the user may write (moat-state needs to)",
        ),
    }
}

/// The URL with any password replaced.
pub(super) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_print() {
        assert_eq!(
            redact("postgres://moat:secret@db:5432/moat"),
            "postgres://moat:***@db:5432/moat"
        );
        assert_eq!(
            redact("sqlite:///var/lib/moat/state.db"),
            "sqlite:///var/lib/moat/state.db"
        );
    }
}
