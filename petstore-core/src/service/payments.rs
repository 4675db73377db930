//! Payments: the built-in fake processor and payment providers' notices. A payment
//! belongs to its order's customer.

use chrono::Utc;

use super::{NoticeOutcome, PetStore};
use crate::auth::{Principal, Scope};
use crate::backend::{Change, Expect, IdempotencyRecord, Write};
use crate::error::{Error, ErrorKind, Result};
use crate::event::EventData;
use crate::id::PaymentId;
use crate::order::{Order, OrderStatus, Payment, PaymentNotice, PaymentRequest, PaymentStatus};

impl PetStore {
    /// One payment: of the caller's own order, or any for an admin.
    #[tracing::instrument(level = "debug", name = "payment", skip_all, fields(sub = who.subject(), id = %id))]
    pub async fn payment(&self, who: &Principal, id: &PaymentId) -> Result<Payment> {
        self.authorize_read(who, Scope::OrdersRead)?;
        let payment = self
            .store()
            .payment(id)
            .await?
            .ok_or_else(|| Error::not_found("payment", id))?;
        match self.visible_order(who, &payment.order_id).await {
            Ok(_) => Ok(payment),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(Error::not_found("payment", id)),
            Err(e) => Err(e),
        }
    }

    /// Pays a `placed` order of the caller's (any, for an admin) with the built-in
    /// fake processor. A declined payment is recorded (`payment.failed`) and the order
    /// stays `placed`.
    #[tracing::instrument(level = "info", name = "pay_order", skip_all, fields(sub = who.subject(), order = %id))]
    pub async fn pay_order(
        &self,
        who: &Principal,
        id: &crate::id::OrderId,
        request: PaymentRequest,
    ) -> Result<Payment> {
        who.require(Scope::OrdersWrite)?;
        request.validate()?;
        let declined = request.token == PaymentRequest::DECLINED;
        let reference = format!("fake_{}", uuid::Uuid::new_v4().simple());
        let notice = PaymentNotice {
            order_id: id.clone(),
            status: if declined {
                PaymentStatus::Failed
            } else {
                PaymentStatus::Succeeded
            },
            reference,
            failure_reason: declined.then(|| "card declined".to_owned()),
        };
        self.retrying(|| async {
            self.visible_order(who, id).await?;
            self.record_payment(&notice, None).await
        })
        .await
        .map(|(payment, _)| payment)
    }

    /// One attempt at recording a payment; `remember` (an idempotency write) commits
    /// with it.
    async fn record_payment(
        &self,
        notice: &PaymentNotice,
        remember: Option<Write>,
    ) -> Result<(Payment, Order)> {
        let id = &notice.order_id;
        let current = self
            .store()
            .order(id)
            .await?
            .ok_or_else(|| Error::not_found("order", id))?;
        if current.status != OrderStatus::Placed {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "order `{id}` is {}; only a placed order can be paid",
                    current.status
                ),
            ));
        }
        let payment = Payment {
            id: PaymentId::generate(),
            order_id: id.clone(),
            amount: current.total,
            status: notice.status,
            failure_reason: notice.failure_reason.clone(),
            reference: notice.reference.clone(),
            created_at: Utc::now(),
        };
        let customer = current.customer.clone();
        match notice.status {
            PaymentStatus::Succeeded => {
                let p = payment.clone();
                let order = self
                    .transition_once(id, OrderStatus::Approved, move |order, mut change| {
                        order.payment_id = Some(p.id.clone());
                        if let Some(w) = remember.clone() {
                            change = change.write(w);
                        }
                        change.write(Write::PutPayment(p.clone())).event(
                            EventData::PaymentSucceeded {
                                payment: p.clone(),
                                customer: customer.clone(),
                            },
                        )
                    })
                    .await?;
                Ok((payment, order))
            }
            PaymentStatus::Failed => {
                let mut change = Change::new();
                if let Some(w) = remember {
                    change = change.write(w);
                }
                self.commit(
                    change
                        .write(Write::PutPayment(payment.clone()))
                        .write(Write::PutOrder {
                            order: current.clone(),
                            expect: Expect::Version(current.version),
                        })
                        .event(EventData::PaymentFailed {
                            payment: payment.clone(),
                            customer,
                        }),
                )
                .await?;
                Ok((payment, current))
            }
        }
    }

    /// Applies a payment provider's notice (inbound webhook) at most once per
    /// `notice_id`. Needs `orders:write` (the webhook adapter uses its own principal).
    #[tracing::instrument(level = "info", name = "apply_payment_notice", skip_all, fields(sub = who.subject(), notice = notice_id))]
    pub async fn apply_payment_notice(
        &self,
        who: &Principal,
        notice_id: &str,
        notice: PaymentNotice,
    ) -> Result<NoticeOutcome> {
        who.require(Scope::OrdersWrite)?;
        if notice_id.is_empty() || notice_id.len() > 255 {
            return Err(Error::invalid_field(
                "webhook-id",
                "must be 1 to 255 characters",
            ));
        }
        let key = format!("payment-notice:{notice_id}");
        self.retrying(|| async {
            if self.store().idempotency(&key).await?.is_some() {
                let order = self.visible_order(who, &notice.order_id).await?;
                return Ok(NoticeOutcome {
                    order,
                    duplicate: true,
                });
            }
            self.visible_order(who, &notice.order_id).await?;
            let remember = Write::PutIdempotency {
                key: key.clone(),
                record: IdempotencyRecord {
                    fingerprint: notice.reference.clone(),
                    resource: notice.order_id.to_string(),
                    created_at: Utc::now(),
                },
            };
            let (_, order) = self.record_payment(&notice, Some(remember)).await?;
            Ok(NoticeOutcome {
                order,
                duplicate: false,
            })
        })
        .await
    }
}
