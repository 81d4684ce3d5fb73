//! The records that answer one question, from one catalog snapshot: which instances qualify,
//! in what order, and what each record type says about them.
//!
//! Healthy instances only: critical ones never, warning ones unless `only_passing` (Consul's
//! default keeps them), and never one whose applicable weight is 0. The order is a weighted
//! shuffle per answer (Efraimidis–Spirakis: each instance draws `u^(1/weight)` and the largest
//! come first), so answers spread load like a plain shuffle when they fit, and when a UDP
//! answer must be truncated the records that fit are the heavier instances, in proportion to
//! their weights (Consul ignores weights in DNS: its issue #1088).

use super::name::{Lookup, hex_ip};
use crate::consul::response::NodeInfo;
use dashmap::DashMap;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use wayfinder_catalog::{Catalog, Status};

/// SOA timers (refresh, retry, expire) as Consul's documentation shows them; only the
/// negative TTL (`minimum`) matters to resolvers, and that one is configurable.
const SOA_REFRESH: i32 = 3600;
const SOA_RETRY: i32 = 600;
const SOA_EXPIRE: i32 = 86400;

/// What the DNS interface was configured with.
#[derive(Debug, Clone)]
pub struct Zone {
    /// The domain answered for, lower case and fully qualified (`consul.`).
    pub domain: Name,
    /// TTL of answers (Consul's default 0: no caching, an instance that fails is gone at once).
    pub ttl: u32,
    /// TTL of negative answers (the SOA's `minimum` and its own TTL), so a resolver does not
    /// keep saying "no such service" long after it was registered (Consul's issue #2301).
    pub negative_ttl: u32,
    /// Leave warning instances out (Consul's `dns_config.only_passing`).
    pub only_passing: bool,
    /// The agent's node: name, address and datacenter.
    pub node: NodeInfo,
}

/// The answer to one question.
#[derive(Debug, Default)]
pub struct Answer {
    /// NOERROR or NXDOMAIN.
    pub code: ResponseCode,
    /// The answer section.
    pub answers: Vec<Record>,
    /// The additional section (addresses of SRV targets).
    pub additionals: Vec<Record>,
    /// The zone's SOA, in the authority section of negative answers.
    pub soa: Option<Record>,
}

/// Most services whose candidates are remembered; past it, answers list them afresh. Names
/// come from registrations, not from queries (an unknown name is never cached), but the bound
/// keeps the cache's memory a known quantity whatever the catalog holds.
const MAX_CACHED_SERVICES: usize = 65_536;

/// Each service's qualifying instances, kept per service index.
///
/// Listing them means looking every instance and its checks up in the catalog and parsing its
/// address: cheap beside 10 instances, a dozen string comparisons per lookup beside 100,000
/// (DNS answered 0.88–0.93× the small catalog's rate, docs/BENCHMARKS.md). Any change to a
/// service, its health included, raises its index, so a list at the current index is exact; the
/// per-answer weighted shuffle is still drawn for every answer.
#[derive(Default)]
pub struct CandidateCache {
    entries: DashMap<Box<str>, Listed>,
}

struct Listed {
    index: u64,
    candidates: Arc<[Candidate]>,
}

impl CandidateCache {
    /// `service`'s candidates at `index`, listed by `list` when not remembered.
    fn get_or_list(
        &self,
        service: &str,
        index: u64,
        list: impl FnOnce() -> Vec<Candidate>,
    ) -> Arc<[Candidate]> {
        if let Some(listed) = self.entries.get(service)
            && listed.index == index
        {
            return Arc::clone(&listed.candidates);
        }
        let candidates: Arc<[Candidate]> = list().into();
        let fresh = Listed {
            index,
            candidates: Arc::clone(&candidates),
        };
        match self.entries.get_mut(service) {
            // A reader on an older snapshot never replaces a newer list.
            Some(mut listed) if listed.index < index => *listed = fresh,
            Some(_) => {}
            None if self.entries.len() < MAX_CACHED_SERVICES => {
                self.entries.insert(service.into(), fresh);
            }
            None => {}
        }
        candidates
    }
}

/// One instance that qualifies, as the records need it.
#[derive(Debug, Clone)]
struct Candidate {
    ip: Option<IpAddr>,
    hostname: Option<String>,
    port: u16,
    weight: u32,
    uses_node_address: bool,
}

impl Zone {
    /// Answers `qtype` for `lookup` (asked as `qname`) from `catalog`, with the services'
    /// candidate lists remembered in `cache`.
    pub fn answer(
        &self,
        catalog: &Catalog,
        cache: &CandidateCache,
        qname: &Name,
        qtype: RecordType,
        lookup: Option<Lookup>,
        rng: &mut fastrand::Rng,
    ) -> Answer {
        match lookup {
            None => self.negative(catalog, ResponseCode::NXDomain),
            Some(Lookup::Service { service, tag }) => {
                let candidates = self.candidates(catalog, cache, &service, tag.as_deref(), rng);
                if candidates.is_empty() {
                    return self.negative(catalog, ResponseCode::NXDomain);
                }
                self.service_records(catalog, qname, qtype, &candidates)
            }
            Some(Lookup::Node { node }) => {
                if !node.eq_ignore_ascii_case(&self.node.name) {
                    return self.negative(catalog, ResponseCode::NXDomain);
                }
                let ip = self.node.address.parse::<IpAddr>().ok();
                self.address_records(catalog, qname, qtype, ip)
            }
            Some(Lookup::Addr(ip)) => self.address_records(catalog, qname, qtype, Some(ip)),
        }
    }

    /// The instances of `service` that may take traffic, in weighted-shuffle order.
    fn candidates(
        &self,
        catalog: &Catalog,
        cache: &CandidateCache,
        service: &str,
        tag: Option<&str>,
        rng: &mut fastrand::Rng,
    ) -> Vec<Candidate> {
        // Service names are stored as registered; DNS names are case-insensitive.
        let Some((stored, index)) = catalog.live_service_ignoring_case(service) else {
            return Vec::new();
        };
        let stored = stored.as_str();
        // Tag lookups (`tag.web.service.consul`) are rare: listed afresh, not cached per tag.
        let listed: Arc<[Candidate]> = match tag {
            None => cache.get_or_list(stored, index, || self.qualifying(catalog, stored, None)),
            Some(_) => self.qualifying(catalog, stored, tag).into(),
        };
        let mut keyed: Vec<(f64, Candidate)> = listed
            .iter()
            .map(|candidate| {
                // Largest u^(1/w) first; as a sort key, ln(u)/w (both sides negative).
                let key = rng.f64().max(f64::MIN_POSITIVE).ln() / f64::from(candidate.weight);
                (key, candidate.clone())
            })
            .collect();
        keyed.sort_by(|a, b| b.0.total_cmp(&a.0));
        keyed.into_iter().map(|(_, c)| c).collect()
    }

    /// The instances of `stored` that may take traffic (and carry `tag`), in catalog order.
    fn qualifying(&self, catalog: &Catalog, stored: &str, tag: Option<&str>) -> Vec<Candidate> {
        catalog
            .instances_of(stored)
            .filter_map(|view| {
                let weight = match view.health {
                    Status::Passing => view.instance.weights.passing,
                    Status::Warning if !self.only_passing => view.instance.weights.warning,
                    _ => return None,
                };
                let instance = view.instance;
                if weight == 0
                    || tag.is_some_and(|t| !instance.tags.iter().any(|x| x.eq_ignore_ascii_case(t)))
                {
                    return None;
                }
                let uses_node_address = instance.address.is_empty();
                let address = if uses_node_address {
                    self.node.address.as_str()
                } else {
                    instance.address.as_str()
                };
                let ip = address.parse::<IpAddr>().ok();
                Some(Candidate {
                    ip,
                    hostname: ip.is_none().then(|| address.to_owned()),
                    port: instance.port,
                    weight,
                    uses_node_address,
                })
            })
            .collect()
    }

    fn service_records(
        &self,
        catalog: &Catalog,
        qname: &Name,
        qtype: RecordType,
        candidates: &[Candidate],
    ) -> Answer {
        let mut answer = Answer::default();
        match qtype {
            RecordType::SRV => {
                let mut targets = BTreeSet::new();
                for candidate in candidates {
                    let Some(target) = self.target(candidate) else {
                        continue;
                    };
                    let weight = u16::try_from(candidate.weight).unwrap_or(u16::MAX);
                    let srv = SRV::new(1, weight, candidate.port, target.clone());
                    answer.answers.push(self.record(qname, RData::SRV(srv)));
                    if let Some(ip) = candidate.ip
                        && targets.insert(target.clone())
                    {
                        answer.additionals.push(self.record(&target, address(ip)));
                    }
                }
            }
            RecordType::A | RecordType::AAAA | RecordType::ANY => {
                let mut seen = BTreeSet::new();
                for ip in candidates.iter().filter_map(|c| c.ip) {
                    if matches_type(ip, qtype) && seen.insert(ip) {
                        answer.answers.push(self.record(qname, address(ip)));
                    }
                }
            }
            _ => {}
        }
        if answer.answers.is_empty() {
            // The name exists, but has no record of this type: NODATA.
            return self.negative(catalog, ResponseCode::NoError);
        }
        answer
    }

    fn address_records(
        &self,
        catalog: &Catalog,
        qname: &Name,
        qtype: RecordType,
        ip: Option<IpAddr>,
    ) -> Answer {
        match ip {
            Some(ip) if matches_type(ip, qtype) => Answer {
                answers: vec![self.record(qname, address(ip))],
                ..Answer::default()
            },
            Some(_) => self.negative(catalog, ResponseCode::NoError),
            None => self.negative(catalog, ResponseCode::NXDomain),
        }
    }

    /// Where an SRV record points: the node's name when the instance uses the node's address,
    /// `<hex>.addr.<dc>.<domain>` for its own IP, its host name otherwise.
    fn target(&self, candidate: &Candidate) -> Option<Name> {
        let dc = self.node.datacenter.as_str();
        if candidate.uses_node_address
            && let Ok(name) = Name::from_labels([self.node.name.as_str(), "node", dc])
                .and_then(|n| n.append_domain(&self.domain))
        {
            return Some(name);
        }
        if let Some(ip) = candidate.ip {
            return Name::from_labels([hex_ip(ip).as_str(), "addr", dc])
                .and_then(|n| n.append_domain(&self.domain))
                .ok();
        }
        let host = candidate.hostname.as_deref()?;
        Name::from_ascii(host).ok().map(|mut n| {
            n.set_fqdn(true);
            n
        })
    }

    fn record(&self, name: &Name, rdata: RData) -> Record {
        Record::from_rdata(name.clone(), self.ttl, rdata)
    }

    /// NXDOMAIN or NODATA, with the zone's SOA so resolvers cache the absence for at most the
    /// negative TTL.
    fn negative(&self, catalog: &Catalog, code: ResponseCode) -> Answer {
        Answer {
            code,
            soa: Some(self.soa(catalog)),
            ..Answer::default()
        }
    }

    fn soa(&self, catalog: &Catalog) -> Record {
        let under = |label: &str| {
            Name::from_labels([label])
                .and_then(|n| n.append_domain(&self.domain))
                .unwrap_or_else(|_| self.domain.clone())
        };
        // The serial only has to change when the zone does; the low 32 bits of the index do.
        let serial = (catalog.index() & u64::from(u32::MAX)) as u32;
        let soa = SOA::new(
            under("ns"),
            under("hostmaster"),
            serial,
            SOA_REFRESH,
            SOA_RETRY,
            SOA_EXPIRE,
            self.negative_ttl,
        );
        Record::from_rdata(self.domain.clone(), self.negative_ttl, RData::SOA(soa))
    }
}

fn matches_type(ip: IpAddr, qtype: RecordType) -> bool {
    matches!(
        (ip, qtype),
        (_, RecordType::ANY) | (IpAddr::V4(_), RecordType::A) | (IpAddr::V6(_), RecordType::AAAA)
    )
}

fn address(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wayfinder_catalog::{Command, Instance, InstanceId, Registration, ServiceName, Weights};

    fn zone() -> Zone {
        Zone {
            domain: Name::from_ascii("consul.").expect("domain"),
            ttl: 0,
            negative_ttl: 30,
            only_passing: false,
            node: NodeInfo::new("vm".into(), "127.0.0.1".into(), "dc1".into()),
        }
    }

    fn catalog(instances: &[(&str, &str, u32, &[&str])]) -> Catalog {
        let mut catalog = Catalog::new(1);
        for (id, address, weight, tags) in instances {
            let instance = Instance {
                address: (*address).to_owned(),
                port: 8080,
                tags: tags.iter().map(|t| (*t).to_owned()).collect(),
                weights: Weights {
                    passing: *weight,
                    warning: 1,
                },
                ..Instance::new(
                    InstanceId::new(id, "ID").expect("id"),
                    ServiceName::new("web", "Name").expect("name"),
                )
            };
            let command = Command::Register(Box::new(Registration {
                instance,
                checks: Vec::new(),
                replace_existing_checks: false,
            }));
            catalog
                .apply(catalog.index() + 1, &command)
                .expect("register");
        }
        catalog
    }

    fn ask(catalog: &Catalog, name: &str, qtype: RecordType, lookup: Option<Lookup>) -> Answer {
        let qname = Name::from_ascii(name).expect("name");
        zone().answer(
            catalog,
            &CandidateCache::default(),
            &qname,
            qtype,
            lookup,
            &mut fastrand::Rng::with_seed(7),
        )
    }

    fn web(tag: Option<&str>) -> Option<Lookup> {
        Some(Lookup::Service {
            service: "web".to_owned(),
            tag: tag.map(str::to_owned),
        })
    }

    #[test]
    fn a_records_per_instance_and_the_node_address_fills_in() {
        let catalog = catalog(&[("a", "10.0.0.1", 1, &[]), ("b", "", 1, &[])]);
        let answer = ask(&catalog, "web.service.consul.", RecordType::A, web(None));
        assert_eq!(answer.code, ResponseCode::NoError);
        let mut ips: Vec<String> = answer.answers.iter().map(|r| r.data.to_string()).collect();
        ips.sort();
        assert_eq!(ips, ["10.0.0.1", "127.0.0.1"]);
        assert!(answer.soa.is_none());
    }

    #[test]
    fn remembered_candidates_follow_the_service_index() {
        let cache = CandidateCache::default();
        let qname = Name::from_ascii("web.service.consul.").expect("name");
        let mut rng = fastrand::Rng::with_seed(3);
        let mut ips = |catalog: &Catalog| -> Vec<String> {
            let answer = zone().answer(catalog, &cache, &qname, RecordType::A, web(None), &mut rng);
            let mut ips: Vec<String> = answer.answers.iter().map(|r| r.data.to_string()).collect();
            ips.sort();
            ips
        };
        let two = catalog(&[("a", "10.0.0.1", 1, &[]), ("b", "10.0.0.2", 1, &[])]);
        assert_eq!(ips(&two), ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(
            ips(&two),
            ["10.0.0.1", "10.0.0.2"],
            "a remembered list, same answer"
        );
        let three = catalog(&[
            ("a", "10.0.0.1", 1, &[]),
            ("b", "10.0.0.2", 1, &[]),
            ("c", "10.0.0.3", 1, &[]),
        ]);
        assert_eq!(ips(&three), ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
        assert_eq!(
            ips(&two),
            ["10.0.0.1", "10.0.0.2"],
            "a reader on an older snapshot gets that snapshot's instances"
        );
        assert_eq!(ips(&three).len(), 3, "and the newer list was kept");
    }

    #[test]
    fn srv_targets_resolve_in_the_additional_section() {
        let catalog = catalog(&[("a", "10.0.0.1", 3, &[]), ("b", "", 1, &[])]);
        let answer = ask(
            &catalog,
            "_web._tcp.service.consul.",
            RecordType::SRV,
            web(None),
        );
        let mut srv: Vec<String> = answer.answers.iter().map(|r| r.data.to_string()).collect();
        srv.sort();
        assert_eq!(
            srv,
            [
                "1 1 8080 vm.node.dc1.consul.",
                "1 3 8080 0a000001.addr.dc1.consul."
            ]
        );
        let mut extra: Vec<String> = answer
            .additionals
            .iter()
            .map(|r| format!("{} {}", r.name, r.data))
            .collect();
        extra.sort();
        assert_eq!(
            extra,
            [
                "0a000001.addr.dc1.consul. 10.0.0.1",
                "vm.node.dc1.consul. 127.0.0.1"
            ]
        );
    }

    #[test]
    fn tags_filter_and_missing_services_are_nxdomain_with_the_negative_ttl() {
        let catalog = catalog(&[("a", "10.0.0.1", 1, &["v1"]), ("b", "10.0.0.2", 1, &["V2"])]);
        let answer = ask(
            &catalog,
            "v2.web.service.consul.",
            RecordType::A,
            web(Some("v2")),
        );
        assert_eq!(answer.answers.len(), 1);
        assert_eq!(answer.answers[0].data.to_string(), "10.0.0.2");
        let none = ask(
            &catalog,
            "v3.web.service.consul.",
            RecordType::A,
            web(Some("v3")),
        );
        assert_eq!(none.code, ResponseCode::NXDomain);
        let soa = none.soa.expect("an SOA");
        assert_eq!(soa.ttl, 30);
        assert!(soa.data.to_string().ends_with(" 30"), "{}", soa.data);
        let unknown = ask(&catalog, "x.consul.", RecordType::A, None);
        assert_eq!(unknown.code, ResponseCode::NXDomain);
    }

    #[test]
    fn other_types_on_a_name_that_exists_are_nodata() {
        let catalog = catalog(&[("a", "10.0.0.1", 1, &[])]);
        for qtype in [RecordType::MX, RecordType::AAAA, RecordType::TXT] {
            let answer = ask(&catalog, "web.service.consul.", qtype, web(None));
            assert_eq!(answer.code, ResponseCode::NoError, "{qtype}");
            assert!(answer.answers.is_empty() && answer.soa.is_some(), "{qtype}");
        }
    }

    #[test]
    fn the_order_is_shuffled_and_heavier_instances_lead_in_proportion() {
        // One instance of weight 9 among nine of weight 1: it comes first in ~half the answers
        // (9 / (9 + 9)), where an unweighted shuffle would put it first in a tenth.
        let mut instances = vec![("heavy", "10.0.0.100", 9, &[] as &[&str])];
        let ips: Vec<String> = (1..=9).map(|i| format!("10.0.0.{i}")).collect();
        let ids: Vec<String> = (1..=9).map(|i| format!("light-{i}")).collect();
        for (id, ip) in ids.iter().zip(&ips) {
            instances.push((id.as_str(), ip.as_str(), 1, &[]));
        }
        let catalog = catalog(&instances);
        let qname = Name::from_ascii("web.service.consul.").expect("name");
        let mut rng = fastrand::Rng::with_seed(11);
        let mut heavy_first = 0;
        let mut firsts = std::collections::BTreeSet::new();
        let rounds = 4000;
        for _ in 0..rounds {
            let answer = zone().answer(
                &catalog,
                &CandidateCache::default(),
                &qname,
                RecordType::A,
                web(None),
                &mut rng,
            );
            let first = answer.answers[0].data.to_string();
            heavy_first += usize::from(first == "10.0.0.100");
            firsts.insert(first);
        }
        let share = heavy_first as f64 / f64::from(rounds);
        assert!(
            (0.45..0.55).contains(&share),
            "heavy first in {share:.3} of answers"
        );
        assert_eq!(firsts.len(), 10, "every instance leads some answers");
    }
}
