//! Registration bodies from arbitrary bytes, as `PUT /v1/agent/service/register`,
//! `PUT /v1/agent/check/register` and `PUT /v1/agent/check/update/{id}` decode them: JSON, then
//! `ServiceBody::decode` and `into_registration`, `check_registration`, `CheckUpdateBody::decode`.
//! What is accepted is applied to a catalog, as the write path would apply it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wayfinder_catalog::{Catalog, Command, Source};
use wayfinder_server::consul::request::{CheckUpdateBody, ServiceBody, check_registration};

fuzz_target!(|data: &[u8]| {
    // The API reads bodies with serde_json::from_slice (api/body.rs).
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let mut catalog = Catalog::new(1);
    if let Ok(body) = ServiceBody::decode(value.clone()) {
        assert_eq!(
            body.has_script_checks(),
            body.script_check_field().is_some()
        );
        match body.into_registration(Source::Api, false) {
            Ok(registration) => {
                let command = Command::Register(Box::new(registration));
                let _ = catalog.apply(catalog.index() + 1, &command);
            }
            Err(error) => {
                let _ = error.to_string();
            }
        }
    }
    match check_registration(value.clone()) {
        Ok((definition, _is_script)) => {
            assert!(
                definition.id.is_some(),
                "a check registration always has an ID"
            );
            let command = Command::RegisterCheck(Box::new(definition));
            let _ = catalog.apply(catalog.index() + 1, &command);
        }
        Err(error) => {
            let _ = (error.to_string(), error.field());
        }
    }
    let _ = CheckUpdateBody::decode(value);
});
