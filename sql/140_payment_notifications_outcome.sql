-- The payment worker claims a notification's (channel, event_id) first, so that a copy of the
-- same provider event handled at the same moment by another process finds it taken and is a
-- duplicate, then records what it did with it: it updates the outcome and its detail, nothing
-- else.
grant update (outcome, detail) on payment_notifications to orderpipe_payment;
