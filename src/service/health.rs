//! Whether this node can serve: the database answers (`/readyz`).

use crate::service::Error;
use crate::state::AppState;
use crate::store;

/// One round trip to the database.
pub async fn database_answers(state: &AppState) -> Result<(), Error> {
    store::ping(&state.store.db).await?;
    Ok(())
}
