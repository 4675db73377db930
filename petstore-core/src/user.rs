//! Users and their passwords (argon2id hashes; the plain text is never stored).

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::auth::Scope;
use crate::error::{Error, Result, Validator};
use crate::rules::{PASSWORD_MAX, PASSWORD_MIN, USERNAME};

/// A user who can obtain tokens with `POST /v1/auth/token`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct User {
    /// Login name.
    #[schemars(length(min = USERNAME.min, max = USERNAME.max), pattern(USERNAME.pattern))]
    pub username: String,
    /// PHC string of the argon2id hash.
    #[serde(skip_serializing)]
    #[schemars(skip)]
    pub(crate) password_hash: String,
    /// The scopes the user's tokens carry.
    pub scopes: Vec<Scope>,
    /// When the user was created.
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("username", &self.username)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl User {
    /// A user with `password` hashed by argon2id.
    pub fn new(
        username: &str,
        password: &str,
        scopes: impl IntoIterator<Item = Scope>,
    ) -> Result<Self> {
        let mut v = Validator::default();
        v.text("username", username, &USERNAME);
        v.length("password", password, PASSWORD_MIN, PASSWORD_MAX);
        v.finish()?;
        let salt = SaltString::generate(&mut OsRng);
        let password_hash = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| {
                Error::new(
                    crate::ErrorKind::Internal,
                    format!("password hashing failed: {e}"),
                )
            })?
            .to_string();
        Ok(Self {
            username: username.to_owned(),
            password_hash,
            scopes: scopes.into_iter().collect(),
            created_at: Utc::now(),
        })
    }

    /// The PHC string of the password's argon2id hash, for a backend that stores users
    /// (it reads the user back with serde, which accepts `password_hash`).
    pub fn password_hash(&self) -> &str {
        &self.password_hash
    }

    /// Whether `password` is this user's (constant-time comparison inside argon2).
    pub fn verify_password(&self, password: &str) -> bool {
        PasswordHash::new(&self.password_hash).is_ok_and(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
    }
}

/// The body of `POST /v1/auth/token`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// Login name.
    #[schemars(length(min = USERNAME.min, max = USERNAME.max), pattern(USERNAME.pattern))]
    pub username: String,
    /// Password.
    #[schemars(length(min = PASSWORD_MIN, max = PASSWORD_MAX))]
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hashed_and_verified() {
        let u = User::new("alice", "correct horse", [Scope::PetsRead]).unwrap();
        assert!(u.password_hash.starts_with("$argon2id$"));
        assert!(!u.password_hash.contains("correct horse"));
        assert!(u.verify_password("correct horse"));
        assert!(!u.verify_password("wrong horse"));
        assert!(!format!("{u:?}").contains("argon2"));
        assert!(User::new("A!", "short", []).is_err());
    }
}
