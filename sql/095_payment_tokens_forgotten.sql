-- The payment worker deletes each token once no charge can need it (the order is past payment,
-- or was never recorded within PAYMENT_TOKEN_RETENTION): a token at rest is a liability.
grant delete on payment_tokens to orderpipe_payment;
