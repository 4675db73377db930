//! Property tests: the order/pet state machine against a model, and event-log
//! invariants under concurrent writers and subscribers.

use std::collections::HashMap;

use petstore_core::*;
use proptest::prelude::*;

use crate::service::{new_pet, staff};

#[derive(Debug, Clone)]
enum Op {
    CreatePet,
    Place(usize),
    Pay(usize, bool),
    Cancel(usize),
    Deliver(usize),
    SetStatus(usize, PetStatus),
    Delete(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let status = prop_oneof![
        Just(PetStatus::Available),
        Just(PetStatus::Pending),
        Just(PetStatus::Sold)
    ];
    prop_oneof![
        2 => Just(Op::CreatePet),
        3 => any::<usize>().prop_map(Op::Place),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(i, ok)| Op::Pay(i, ok)),
        1 => any::<usize>().prop_map(Op::Cancel),
        1 => any::<usize>().prop_map(Op::Deliver),
        1 => (any::<usize>(), status).prop_map(|(i, s)| Op::SetStatus(i, s)),
        1 => any::<usize>().prop_map(Op::Delete),
    ]
}

/// The model: what the contract says must happen.
#[derive(Default)]
struct Model {
    pets: Vec<(PetId, Option<PetStatus>)>, // None: deleted
    orders: Vec<(OrderId, usize, OrderStatus)>,
}

impl Model {
    fn active_order(&self, pet: usize) -> bool {
        self.orders
            .iter()
            .any(|(_, p, s)| *p == pet && s.is_active())
    }
}

fn pick<T>(v: &[T], i: usize) -> Option<usize> {
    (!v.is_empty()).then(|| i % v.len())
}

async fn run_ops(ops: Vec<Op>) {
    let store = PetStore::in_memory();
    let admin = Principal::new("root", [Scope::Admin]);
    let mut m = Model::default();
    let mut expected_events = 0u64;
    for op in ops {
        match op {
            Op::CreatePet => {
                let pet = store.create_pet(&staff(), new_pet("P")).await.unwrap();
                m.pets.push((pet.id, Some(PetStatus::Available)));
                expected_events += 1;
            }
            Op::Place(i) => {
                let Some(i) = pick(&m.pets, i) else { continue };
                let result = store
                    .place_order(&staff(), NewOrder::new(m.pets[i].0.clone()), None)
                    .await;
                match m.pets[i].1 {
                    Some(PetStatus::Available) => {
                        let order = result.unwrap().order;
                        m.orders.push((order.id, i, OrderStatus::Placed));
                        m.pets[i].1 = Some(PetStatus::Pending);
                        expected_events += 2;
                    }
                    Some(_) => assert_eq!(result.unwrap_err().kind(), ErrorKind::Conflict),
                    None => assert_eq!(result.unwrap_err().kind(), ErrorKind::NotFound),
                }
            }
            Op::Pay(o, ok) => {
                let Some(o) = pick(&m.orders, o) else {
                    continue;
                };
                let req = PaymentRequest {
                    token: if ok {
                        "tok_visa".into()
                    } else {
                        PaymentRequest::DECLINED.into()
                    },
                };
                let result = store.pay_order(&staff(), &m.orders[o].0, req).await;
                if m.orders[o].2 == OrderStatus::Placed {
                    let payment = result.unwrap();
                    if ok {
                        assert_eq!(payment.status, PaymentStatus::Succeeded);
                        m.orders[o].2 = OrderStatus::Approved;
                        expected_events += 2;
                    } else {
                        assert_eq!(payment.status, PaymentStatus::Failed);
                        expected_events += 1;
                    }
                } else {
                    assert_eq!(result.unwrap_err().kind(), ErrorKind::Conflict);
                }
            }
            Op::Cancel(o) | Op::Deliver(o) => {
                let Some(o) = pick(&m.orders, o) else {
                    continue;
                };
                let (next, result) = if matches!(op, Op::Cancel(_)) {
                    (
                        OrderStatus::Cancelled,
                        store.cancel_order(&staff(), &m.orders[o].0).await,
                    )
                } else {
                    (
                        OrderStatus::Delivered,
                        store.deliver_order(&admin, &m.orders[o].0).await,
                    )
                };
                if m.orders[o].2.can_become(next) {
                    result.unwrap();
                    m.orders[o].2 = next;
                    let pet = m.orders[o].1;
                    expected_events += 1;
                    // The contract, stated independently of the code under test.
                    let pet_status = if next == OrderStatus::Cancelled {
                        PetStatus::Available
                    } else {
                        PetStatus::Sold
                    };
                    if m.pets[pet].1 != Some(pet_status) {
                        m.pets[pet].1 = Some(pet_status);
                        expected_events += 1;
                    }
                } else {
                    assert_eq!(result.unwrap_err().kind(), ErrorKind::Conflict);
                }
            }
            Op::SetStatus(i, status) => {
                let Some(i) = pick(&m.pets, i) else { continue };
                let result = store.set_pet_status(&staff(), &m.pets[i].0, status).await;
                match m.pets[i].1 {
                    None => assert_eq!(result.unwrap_err().kind(), ErrorKind::NotFound),
                    Some(current) if current == status => {
                        result.unwrap();
                    }
                    Some(_) if status != PetStatus::Pending && m.active_order(i) => {
                        assert_eq!(result.unwrap_err().kind(), ErrorKind::Conflict)
                    }
                    Some(_) => {
                        result.unwrap();
                        m.pets[i].1 = Some(status);
                        expected_events += 1;
                    }
                }
            }
            Op::Delete(i) => {
                let Some(i) = pick(&m.pets, i) else { continue };
                let result = store.delete_pet(&staff(), &m.pets[i].0, None).await;
                match m.pets[i].1 {
                    None => assert_eq!(result.unwrap_err().kind(), ErrorKind::NotFound),
                    Some(_) if m.active_order(i) => {
                        assert_eq!(result.unwrap_err().kind(), ErrorKind::Conflict)
                    }
                    Some(_) => {
                        result.unwrap();
                        m.pets[i].1 = None;
                        expected_events += 1;
                    }
                }
            }
        }
        // Invariants after every step: the store agrees with the model.
        for (id, status) in &m.pets {
            match (store.pet(&staff(), id).await, status) {
                (Ok(pet), Some(s)) => assert_eq!(pet.status, *s),
                (Err(e), None) => assert_eq!(e.kind(), ErrorKind::NotFound),
                (got, want) => panic!("pet {id}: store {got:?}, model {want:?}"),
            }
        }
        for (id, pet, status) in &m.orders {
            let order = store.order(&staff(), id).await.unwrap();
            assert_eq!(order.status, *status);
            if status.is_active() {
                assert_eq!(
                    m.pets[*pet].1,
                    Some(PetStatus::Pending),
                    "an active order holds its pet"
                );
            }
        }
        let inventory = store.inventory(&staff()).await.unwrap().items;
        let mut want: HashMap<PetStatus, u64> = HashMap::new();
        for s in m.pets.iter().filter_map(|(_, s)| *s) {
            *want.entry(s).or_default() += 1;
        }
        assert_eq!(
            inventory.available,
            want.get(&PetStatus::Available).copied().unwrap_or(0)
        );
        assert_eq!(
            inventory.pending,
            want.get(&PetStatus::Pending).copied().unwrap_or(0)
        );
        assert_eq!(
            inventory.sold,
            want.get(&PetStatus::Sold).copied().unwrap_or(0)
        );
        assert_eq!(
            store.head().await.unwrap().offset,
            expected_events,
            "one event per state change"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn state_machine_matches_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run_ops(ops));
    }

    #[test]
    fn log_has_no_gap_or_duplicate_under_concurrency(
        writers in 1usize..4,
        per_writer in 1usize..30,
        starts in proptest::collection::vec(0u64..10, 1..4),
    ) {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
            .block_on(petstore_core::testing::log_has_no_gap_or_duplicate(
                &[PetStore::in_memory()], writers, per_writer, &starts,
            ));
    }
}
