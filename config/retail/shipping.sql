-- The shipping service's database (MariaDB): the orders and who to ship to.
CREATE TABLE customers (
    id    INT PRIMARY KEY,
    name  VARCHAR(200) NOT NULL,
    email VARCHAR(200) NOT NULL,
    city  VARCHAR(100) NOT NULL
);

CREATE TABLE orders (
    id          INT PRIMARY KEY,
    customer_id INT NOT NULL,
    status      VARCHAR(20) NOT NULL,
    total       DECIMAL(12, 2) NOT NULL,
    placed_at   DATETIME(6) NOT NULL,
    updated_at  DATETIME(6) NOT NULL
);
